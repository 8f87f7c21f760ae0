// See cni.h.
#include "cni.h"

#include <filesystem>
#include <fstream>

namespace zmesh::test {

namespace fs = std::filesystem;
using nlohmann::json;

std::string cni_uid_of(const std::string& k8s_name) { return "0000-" + k8s_name; }

CniPod cni_sandbox(const Lab& lab, const std::string& name, const std::string& k8s_name) {
  CniPod pod{name, "zm-" + lab.name() + "-" + name,
             lab.topology().at("cgroupRoot").get<std::string>() + "/node1/pod" + cni_uid_of(k8s_name)};
  if (run({"ip", "netns", "add", pod.netns}).exit_code != 0) throw std::runtime_error("ip netns add " + pod.netns);
  fs::create_directories(pod.cgroup);
  return pod;
}

std::vector<std::string> in_cni_pod(const CniPod& pod, const std::vector<std::string>& command) {
  std::vector<std::string> argv{
      "sh", "-c", "cg=$0; ns=$1; shift; echo $$ > \"$cg\"/cgroup.procs && exec nsenter --net=/run/netns/\"$ns\" \"$@\"",
      pod.cgroup, pod.netns};
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

Result cni_plugin(const Lab& lab, const std::string& type, const std::string& command, const CniPod& pod,
                  const json& conf, const std::string& args) {
  const std::string state = lab.topology().at("stateDir");
  const std::string file = state + "/cni-" + pod.name + "-" + type + "-" + command + ".json";
  std::ofstream(file) << conf.dump();
  const std::string binary = type == "zmesh-cni" ? bin_path("zmesh-cni") : std::string(kCniPath) + "/" + type;
  return run(lab.exec("node1", {"env", "CNI_COMMAND=" + command, "CNI_CONTAINERID=cid-" + pod.name,
                                "CNI_NETNS=/run/netns/" + pod.netns, "CNI_IFNAME=eth0",
                                "CNI_PATH=" + std::string(kCniPath), "CNI_ARGS=" + args, "sh", "-c",
                                "exec \"$0\" < \"$1\"", binary, file}));
}

json cni_ptp_conf(const Lab& lab) {
  const std::string state = lab.topology().at("stateDir");
  return json::parse(R"({"cniVersion": "1.0.0", "name": "lab", "type": "ptp", "ipMasq": false,
      "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
               "ranges": [[{"subnet": "10.244.1.0/24", "rangeStart": "10.244.1.100", "rangeEnd": "10.244.1.120"}]],
               "dataDir": ")" + state + R"(/cni-ipam"}})");
}

std::string cni_k8s_args(const std::string& name, const std::string& ns, const std::string& service_account) {
  // IgnoreUnknown: the Go plugins refuse keys they do not know.
  return "IgnoreUnknown=1;K8S_POD_NAMESPACE=" + ns + ";K8S_POD_NAME=" + name + ";K8S_POD_UID=" + cni_uid_of(name) +
         (service_account.empty() ? "" : ";K8S_POD_SERVICE_ACCOUNT=" + service_account);
}

}  // namespace zmesh::test
