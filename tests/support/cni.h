// CNI in the lab: a pod made as a container runtime makes one on lab node1 (a sandbox: a netns
// zm-<lab>-<name> that `lab down` removes, and the pod cgroup kubelet made, pod<uid>), and the
// real plugins of a chain run on it as the runtime runs them (env, config on stdin, in node1's
// netns). Shared by the CNI tests and the xDS tests.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lab.h"

namespace zmesh::test {

inline constexpr const char* kCniPath = "/usr/lib/cni";

struct CniPod {
  std::string name, netns, cgroup;
};

std::string cni_uid_of(const std::string& k8s_name);  // the pod UID the tests give a pod name
CniPod cni_sandbox(const Lab& lab, const std::string& name, const std::string& k8s_name);
// argv that runs `command` inside the pod (its cgroup, then its netns).
std::vector<std::string> in_cni_pod(const CniPod& pod, const std::vector<std::string>& command);
// One plugin of the chain: `type` is "zmesh-cni" (the build's) or one of kCniPath.
Result cni_plugin(const Lab& lab, const std::string& type, const std::string& command, const CniPod& pod,
                  const nlohmann::json& conf, const std::string& args);
// ptp with host-local IPAM on node1's pod CIDR (addresses .100-.120).
nlohmann::json cni_ptp_conf(const Lab& lab);
// CNI_ARGS as kubelet passes them; `service_account` empty: none, as a stock kubelet.
std::string cni_k8s_args(const std::string& name, const std::string& ns = "default",
                         const std::string& service_account = "cni-sa");

}  // namespace zmesh::test
