#include "self_check.h"

#include <linux/magic.h>
#include <netinet/in.h>
#include <sys/statfs.h>

#include <cerrno>
#include <cstring>

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

// Whether `root` is (or, not made yet, would be) on a bpffs: pins anywhere else fail, and a
// node with bpffs mounted elsewhere than the chart's hostPath would fail at the first pin.
std::optional<std::string> bpf_root_problem(const std::filesystem::path& root) {
  std::error_code ec;
  std::filesystem::path at = root;
  while (at.has_parent_path() && at != at.parent_path() && !std::filesystem::exists(at, ec)) at = at.parent_path();
  struct statfs st {};
  if (statfs(at.c_str(), &st) != 0) return "cannot look at " + at.string() + ": " + std::strerror(errno);
  if (st.f_type != BPF_FS_MAGIC)
    return "--bpf-root " + root.string() + " is not on bpffs (" + at.string() +
           " is not one): mount -t bpf bpf /sys/fs/bpf, or mount the host's bpffs there";
  return std::nullopt;
}

}  // namespace

SelfCheck run_self_check(const std::filesystem::path& bpf_root) {
  SelfCheck check;
  check.facts = read_kernel_facts();
  if (!check.facts.btf)
    check.problems.push_back("/sys/kernel/btf/vmlinux is missing: zmesh needs a kernel built with CONFIG_DEBUG_INFO_BTF");
  const auto [major, minor] = parse_kernel_version(check.facts.release);
  if (std::pair(major, minor) < kOldestKernel)
    check.problems.push_back("kernel " + check.facts.release + " is older than " + std::to_string(kOldestKernel.first) +
                             "." + std::to_string(kOldestKernel.second) + ", the oldest zmesh runs on");
  if (!check.facts.bpffs)
    check.problems.push_back("bpffs is not mounted: mount -t bpf bpf /sys/fs/bpf (scripts/install-deps.sh does)");
  else if (auto problem = bpf_root_problem(bpf_root))
    check.problems.push_back(*problem);
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
