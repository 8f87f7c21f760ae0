#include "self_check.h"

#include <netinet/in.h>

#include <exception>

#include "zmesh/packet.h"
#include "zmesh/probe.h"

namespace zmesh {
namespace {

// Runs a TCP/IPv4 and a UDP/IPv6 frame through the probe; each must pass and be counted once.
void check_programs_run(std::vector<std::string>& problems) {
  try {
    PipelineProbe probe;
    const int tcp4 = probe.run(packet::build({.src = "10.244.1.2", .dst = "10.244.2.2", .protocol = IPPROTO_TCP}));
    const int udp6 = probe.run(packet::build({.src = "fd00::2", .dst = "fd00::3", .protocol = IPPROTO_UDP}));
    if (tcp4 != PipelineProbe::kVerdictPass || udp6 != PipelineProbe::kVerdictPass)
      problems.push_back("the probe program returned verdicts " + std::to_string(tcp4) + ", " +
                         std::to_string(udp6) + " where 0, 0 (pass) were expected");
    const auto counters = probe.counters();
    const bool counted = counters.size() == 2 && counters[0].family == 4 && counters[0].protocol == IPPROTO_TCP &&
                         counters[0].packets == 1 && counters[1].family == 6 &&
                         counters[1].protocol == IPPROTO_UDP && counters[1].packets == 1;
    if (!counted) problems.push_back("the probe program ran but its counter map does not show the two test frames");
  } catch (const std::exception& e) {
    problems.push_back(e.what());
  }
}

}  // namespace

SelfCheck run_self_check() {
  SelfCheck check;
  check.facts = read_kernel_facts();
  if (!check.facts.btf)
    check.problems.push_back("/sys/kernel/btf/vmlinux is missing: zmesh needs a kernel built with CONFIG_DEBUG_INFO_BTF");
  if (!check.facts.bpffs)
    check.problems.push_back("bpffs is not mounted: mount -t bpf bpf /sys/fs/bpf (scripts/install-deps.sh does)");
  if (!check.facts.cgroup2)
    check.problems.push_back("cgroup v2 is not mounted: the connect hooks attach to cgroup v2 cgroups");
  check_programs_run(check.problems);
  return check;
}

nlohmann::json SelfCheck::to_json() const {
  auto path = [](const std::optional<std::filesystem::path>& p) -> nlohmann::json {
    return p ? nlohmann::json(p->string()) : nlohmann::json(nullptr);
  };
  return {
      {"ok", ok()},
      {"kernel", facts.release},
      {"btf", facts.btf},
      {"bpffs", path(facts.bpffs)},
      {"cgroup2", path(facts.cgroup2)},
      {"tcx", facts.tcx},
      {"problems", problems},
  };
}

}  // namespace zmesh
