// The start-up self-check: the kernel facts zmesh needs, and proof that it runs our programs.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "zmesh/kernel.h"

namespace zmesh {

struct SelfCheck {
  KernelFacts facts;
  std::vector<std::string> problems;  // empty when zmesh can run here
  bool ok() const { return problems.empty(); }
  nlohmann::json to_json() const;
};

// The oldest kernel zmesh runs on: bpf_sk_assign at tc ingress and BPF links on cgroups (5.7),
// BPF memory charged to the memory cgroup instead of RLIMIT_MEMLOCK (5.11: zmeshd needs no
// CAP_SYS_RESOURCE), SO_NETNS_COOKIE (5.14) and bpf_get_netns_cookie in sockops (5.15).
inline constexpr std::pair<int, int> kOldestKernel{5, 15};

// Never throws: every failure becomes a problem that says what to fix. `bpf_root` is where
// zmeshd will pin (--bpf-root): it must be on a bpffs.
SelfCheck run_self_check(const std::filesystem::path& bpf_root);

}  // namespace zmesh
