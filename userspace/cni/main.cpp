// zmesh-cni: a chained CNI plugin (spec 1.0.0; 0.4.0 accepted) that runs after the cluster's
// main plugin and enrolls the pod with the node's zmeshd over its control socket, as istio-cni
// does for ztunnel. Invoked by a container runtime with CNI_COMMAND in the environment and the
// network config on stdin:
//   ADD     the pod's IPs (prevResult), host-side veth (prevResult), cgroup (the pod-level
//           cgroup kubelet made for K8S_POD_UID) and identity (K8S_POD_NAMESPACE, K8S_POD_NAME,
//           K8S_POD_SERVICE_ACCOUNT in CNI_ARGS) -> `enroll`;
//           prints prevResult. zmeshd unreachable: error 11 (fail closed) unless "failOpen".
//   DEL     `unenroll`; succeeds also when zmeshd or the pod is gone (zmeshd drops pods whose
//           cgroup vanished when it starts).
//   CHECK   the pod is enrolled here with the addresses of prevResult.
//   VERSION the versions above.
// With arguments it is the installer a DaemonSet runs: `zmesh-cni install|uninstall --bin-dir
// D --conf-dir D [--wait] [--identity-from-xds]` copies itself into the CNI bin dir and adds itself to the end of the
// .conflist the runtime uses (removing both on uninstall); --wait stays and re-adds it when the
// main plugin rewrites its config.
// Errors are CNI error JSON on stdout (code, msg, details) and exit status 1.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "zmesh/config.h"
#include "zmesh/control.h"
#include "zmesh/json.h"
#include "zmesh/kernel.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using zmesh::json_text;

// CNI spec error codes.
enum Code { kIncompatibleVersion = 1, kInvalidEnvironment = 4, kDecodeFailed = 6, kInvalidConfig = 7, kTryAgain = 11,
            kNotEnrolled = 100 };

struct CniError {
  int code;
  std::string msg, details;
};

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// CNI_ARGS: "K8S_POD_NAMESPACE=a;K8S_POD_NAME=b;..."
std::map<std::string, std::string> cni_args() {
  std::map<std::string, std::string> out;
  std::stringstream in(env("CNI_ARGS"));
  for (std::string pair; std::getline(in, pair, ';');) {
    const auto eq = pair.find('=');
    if (eq != std::string::npos) out[pair.substr(0, eq)] = pair.substr(eq + 1);
  }
  return out;
}

const std::vector<std::string> kVersions = {"0.4.0", "1.0.0"};

// The pod's cgroup v2 directory, which kubelet makes before it asks the runtime for the
// sandbox (so before any process of the pod exists): `pod<uid>` (cgroupfs driver) or
// `...-pod<uid_with_underscores>.slice` (systemd driver), searched under the cgroup v2 mount.
// Never a guess: no match, or two, is an error.
fs::path pod_cgroup(const std::string& pod_uid) {
  if (pod_uid.empty())
    throw CniError{kInvalidEnvironment, "CNI_ARGS has no K8S_POD_UID",
                   "zmesh-cni finds the pod's cgroup by the pod's UID (kubelet passes it)"};
  const auto mount = zmesh::find_mount("cgroup2");
  if (!mount) throw CniError{kTryAgain, "cgroup v2 is not mounted on this node", "zmesh needs cgroup v2"};
  std::string underscored = pod_uid;
  std::replace(underscored.begin(), underscored.end(), '-', '_');
  const std::string cgroupfs = "pod" + pod_uid, systemd = "-pod" + underscored + ".slice";
  std::vector<fs::path> found;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(*mount, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it.depth() > 5) {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_directory(ec)) continue;
    const std::string name = it->path().filename();
    if (name == cgroupfs || (name.size() > systemd.size() && name.ends_with(systemd))) {
      found.push_back(it->path());
      it.disable_recursion_pending();  // its containers' cgroups are inside
    }
  }
  if (found.empty())
    throw CniError{kTryAgain, "no cgroup for pod UID " + pod_uid + " under " + mount->string(),
                   "kubelet makes pod" + pod_uid + " (cgroupfs) or *-pod" + underscored + ".slice (systemd)"};
  if (found.size() > 1)
    throw CniError{kInvalidEnvironment, "two cgroups claim pod UID " + pod_uid,
                   found[0].string() + " and " + found[1].string()};
  return found.front();
}

json read_config() {
  std::stringstream text;
  text << std::cin.rdbuf();
  json conf;
  try {
    conf = zmesh::parse_json(text.str());
  } catch (const zmesh::JsonError& e) {
    throw CniError{kDecodeFailed, "the network config on stdin is not JSON", e.what()};
  }
  if (!conf.is_object()) throw CniError{kDecodeFailed, "the network config on stdin is not a JSON object", ""};
  const std::string version = conf.value("cniVersion", "");
  if (std::find(kVersions.begin(), kVersions.end(), version) == kVersions.end())
    throw CniError{kIncompatibleVersion, "cniVersion '" + version + "' is not supported", "supported: 0.4.0, 1.0.0"};
  for (const char* key : {"socket"})
    if (conf.contains(key) && !conf[key].is_string()) throw CniError{kInvalidConfig, std::string(key) + ": expected a string", ""};
  if (conf.contains("failOpen") && !conf["failOpen"].is_boolean())
    throw CniError{kInvalidConfig, "failOpen: expected true or false", ""};
  if (conf.contains("excludeNamespaces") && !conf["excludeNamespaces"].is_array())
    throw CniError{kInvalidConfig, "excludeNamespaces: expected a list of namespaces", ""};
  return conf;
}

struct Pod {
  std::string namespace_, name, uid;
};

Pod pod_of(const std::map<std::string, std::string>& args) {
  auto get = [&](const char* key) {
    auto it = args.find(key);
    return it == args.end() ? std::string() : it->second;
  };
  Pod pod{get("K8S_POD_NAMESPACE"), get("K8S_POD_NAME"), get("K8S_POD_UID")};
  if (pod.namespace_.empty() || pod.name.empty())
    throw CniError{kInvalidEnvironment, "CNI_ARGS has no K8S_POD_NAMESPACE and K8S_POD_NAME",
                   "zmesh-cni names workloads after their pods; CNI_ARGS='" + zmesh::printable(env("CNI_ARGS")) + "'"};
  // Names kubelet would never pass: a '/' once made a pod that "namespace/name" could not unenroll.
  if (!zmesh::is_namespace_name(pod.namespace_) || !zmesh::is_object_name(pod.name))
    throw CniError{kInvalidEnvironment,
                   "K8S_POD_NAMESPACE/K8S_POD_NAME '" + zmesh::printable(pod.namespace_ + "/" + pod.name) +
                       "' is not a Kubernetes namespace and pod name",
                   ""};
  return pod;
}

bool excluded(const json& conf, const Pod& pod, const std::map<std::string, std::string>& args) {
  const json namespaces = conf.value("excludeNamespaces", json::array({"kube-system"}));
  for (const auto& ns : namespaces)
    if (ns.is_string() && ns.get<std::string>() == pod.namespace_) return true;
  auto opt = args.find("ZMESH_MESH");  // the pod's opt-out, as an annotation would say it
  return opt != args.end() && opt->second == "false";
}

fs::path socket_of(const json& conf) {
  return conf.value("socket", std::string(zmesh::control::kDefaultStateDir) + "/" + zmesh::control::kSocketName);
}

std::vector<std::string> pod_ips(const json& prev) {
  std::vector<std::string> out;
  if (prev.contains("ips") && prev["ips"].is_array())
    for (const auto& ip : prev["ips"]) {
      const std::string cidr = ip.value("address", "");
      if (!cidr.empty()) out.push_back(cidr.substr(0, cidr.find('/')));
    }
  return out;
}

// The node side of the pod's veth: the last interface without a sandbox (ptp: [veth, eth0];
// bridge: [cni0, veth, eth0]).
std::string host_veth(const json& prev) {
  std::string out;
  if (prev.contains("interfaces") && prev["interfaces"].is_array())
    for (const auto& i : prev["interfaces"])
      if (!i.contains("sandbox") || !i["sandbox"].is_string() || i["sandbox"].get<std::string>().empty())
        out = i.value("name", "");
  return out;
}

json add(const json& conf) {
  if (!conf.contains("prevResult") || !conf["prevResult"].is_object())
    throw CniError{kInvalidConfig, "no prevResult: zmesh-cni is a chained plugin and runs after the main one", ""};
  const json& prev = conf["prevResult"];
  const auto args = cni_args();
  const Pod pod = pod_of(args);
  json result = prev;
  result["cniVersion"] = conf["cniVersion"];
  if (excluded(conf, pod, args)) return result;
  const auto ips = pod_ips(prev);
  if (ips.empty()) throw CniError{kInvalidConfig, "prevResult has no IP addresses for the pod", json_text(prev)};
  auto sa = args.find("K8S_POD_SERVICE_ACCOUNT");
  std::string service_account = sa != args.end() ? sa->second : conf.value("defaultServiceAccount", "");
  // A stock kubelet passes no service account: with istiod, zmeshd takes the pod's identity
  // from its xDS Workload ("identityFromXds": true, the chart's setting).
  const bool from_xds = service_account.empty() && conf.value("identityFromXds", false);
  if (service_account.empty() && !from_xds)
    throw CniError{kInvalidEnvironment, "the pod's service account is unknown",
                   "pass K8S_POD_SERVICE_ACCOUNT in CNI_ARGS, set \"identityFromXds\": true in the config (zmeshd "
                   "fed by istiod), or set \"defaultServiceAccount\" (that account's identity for every pod)"};
  json workload = {{"name", pod.name},
                   {"namespace", pod.namespace_},
                   {"workloadIps", ips},
                   {"cgroup", pod_cgroup(pod.uid).string()}};
  if (from_xds) workload["identityFrom"] = "xds";
  else workload["serviceAccount"] = service_account;
  if (!pod.uid.empty()) workload["uid"] = pod.uid;
  if (const auto veth = host_veth(prev); !veth.empty()) workload["hostVeth"] = veth;
  try {
    zmesh::control::call(socket_of(conf), {{"command", "enroll"}, {"workload", workload}});
  } catch (const zmesh::control::ControlError& e) {
    if (conf.value("failOpen", false)) {
      std::cerr << "zmesh-cni: " << pod.namespace_ << "/" << pod.name << " is NOT meshed (failOpen): " << e.what()
                << '\n';
      return result;
    }
    throw CniError{kTryAgain, "zmesh could not enroll " + pod.namespace_ + "/" + pod.name, e.what()};
  }
  return result;
}

void del(const json& conf) {
  const auto args = cni_args();
  if (!args.contains("K8S_POD_NAMESPACE") || !args.contains("K8S_POD_NAME")) return;  // never enrolled by us
  if (!zmesh::is_namespace_name(args.at("K8S_POD_NAMESPACE")) || !zmesh::is_object_name(args.at("K8S_POD_NAME")))
    return;  // ADD refused such names: never enrolled by us
  const Pod pod = pod_of(args);
  try {
    zmesh::control::call(socket_of(conf), {{"command", "unenroll"}, {"name", pod.namespace_ + "/" + pod.name}});
  } catch (const zmesh::control::ControlError& e) {
    // Gone already, or zmeshd down (it drops pods whose cgroup vanished when it starts): DEL
    // must succeed so that the runtime can finish deleting the pod.
    std::cerr << "zmesh-cni: DEL " << pod.namespace_ << "/" << pod.name << ": " << e.what() << '\n';
  }
}

void check(const json& conf) {
  const auto args = cni_args();
  const Pod pod = pod_of(args);
  if (excluded(conf, pod, args)) return;
  json workloads;
  try {
    workloads = zmesh::control::call(socket_of(conf), {{"command", "workloads"}});
  } catch (const zmesh::control::ControlError& e) {
    throw CniError{kTryAgain, "zmesh cannot be asked about " + pod.namespace_ + "/" + pod.name, e.what()};
  }
  const auto ips = conf.contains("prevResult") ? pod_ips(conf["prevResult"]) : std::vector<std::string>{};
  for (const auto& w : workloads)
    if (w.value("namespace", "") == pod.namespace_ && w.value("name", "") == pod.name) {
      if (!w.value("enrolledHere", false))
        throw CniError{kNotEnrolled, pod.namespace_ + "/" + pod.name + " is known but not enrolled on this node", ""};
      const json known = w.value("workloadIps", json::array());
      for (const auto& ip : ips)
        if (std::find(known.begin(), known.end(), ip) == known.end())
          throw CniError{kNotEnrolled, pod.namespace_ + "/" + pod.name + " is enrolled without " + ip, json_text(w)};
      return;
    }
  throw CniError{kNotEnrolled, pod.namespace_ + "/" + pod.name + " is not enrolled in zmesh", ""};
}

// --- installer --------------------------------------------------------------------------------

void write_atomically(const fs::path& path, const std::string& text, fs::perms perms) {
  const fs::path tmp = path.string() + ".zmesh-tmp";
  {
    std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
    out << text;
    if (!out.flush()) throw std::runtime_error("write " + tmp.string() + ": " + std::strerror(errno));
  }
  fs::permissions(tmp, perms);
  fs::rename(tmp, path);
}

// The config the runtime uses, as libcni picks it: the first .conf, .conflist or .json by
// name. Chaining needs a list: a single-plugin file there is an error, not a silent miss.
fs::path conflist_in(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto ext = e.path().extension();
    if (ext == ".conflist" || ext == ".conf" || ext == ".json") files.push_back(e.path());
  }
  if (files.empty())
    throw std::runtime_error("no CNI config in " + dir.string() + " (install the cluster's main CNI plugin first)");
  std::sort(files.begin(), files.end());
  if (files.front().extension() != ".conflist")
    throw std::runtime_error("the runtime uses " + files.front().string() +
                             ", a single-plugin config: zmesh-cni chains only into a .conflist");
  return files.front();
}

int install(const fs::path& bin_dir, const fs::path& conf_dir, const json& entry, bool remove) {
  const fs::path list_path = conflist_in(conf_dir);
  std::ifstream in(list_path);
  std::stringstream text;
  text << in.rdbuf();
  json list = zmesh::parse_json(text.str());
  if (!list.contains("plugins") || !list["plugins"].is_array())
    throw std::runtime_error(list_path.string() + ": no \"plugins\" list");
  auto& plugins = list["plugins"];
  for (size_t i = 0; i < plugins.size(); ++i)
    if (plugins[i].value("type", "") == "zmesh-cni") plugins.erase(i--);
  if (!remove) {
    std::ifstream self("/proc/self/exe", std::ios::binary);
    std::stringstream bytes;
    bytes << self.rdbuf();
    write_atomically(bin_dir / "zmesh-cni", bytes.str(), fs::perms::owner_all | fs::perms::group_read |
                                                               fs::perms::group_exec | fs::perms::others_read |
                                                               fs::perms::others_exec);
    plugins.push_back(entry);
  } else {
    std::error_code ec;
    fs::remove(bin_dir / "zmesh-cni", ec);
  }
  write_atomically(list_path, json_text(list, 2) + "\n",
                   fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
  std::cerr << "zmesh-cni: " << (remove ? "removed from " : "added to ") << list_path.string() << '\n';
  return 0;
}

int installer(int argc, char** argv) {
  const std::string command = argv[1];
  fs::path bin_dir = "/opt/cni/bin", conf_dir = "/etc/cni/net.d";
  json entry = {{"type", "zmesh-cni"},
                {"socket", std::string(zmesh::control::kDefaultStateDir) + "/" + zmesh::control::kSocketName},
                {"failOpen", false},
                {"excludeNamespaces", {"kube-system"}}};
  bool wait = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    auto inline_value = [&](const char* flag) -> std::optional<std::string> {
      const std::string prefix = std::string(flag) + "=";
      if (a.rfind(prefix, 0) == 0) return a.substr(prefix.size());
      return std::nullopt;
    };
    if (auto v = inline_value("--bin-dir")) bin_dir = *v;
    else if (auto v2 = inline_value("--conf-dir")) conf_dir = *v2;
    else if (auto v3 = inline_value("--socket")) entry["socket"] = *v3;
    else if (a == "--bin-dir") bin_dir = value();
    else if (a == "--conf-dir") conf_dir = value();
    else if (a == "--socket") entry["socket"] = value();
    else if (a == "--fail-open") entry["failOpen"] = true;
    else if (a == "--identity-from-xds") entry["identityFromXds"] = true;  // zmeshd fed by istiod
    else if (a == "--wait") wait = true;
    else throw std::runtime_error("unknown argument '" + a + "' (install|uninstall --bin-dir D --conf-dir D "
                                  "[--socket S] [--fail-open] [--wait])");
  }
  if (command == "uninstall") return install(bin_dir, conf_dir, entry, true);
  if (command != "install") throw std::runtime_error("unknown command '" + command + "' (install, uninstall)");
  install(bin_dir, conf_dir, entry, false);
  if (!wait) return 0;
  // Stay, and put the entry back whenever the main plugin rewrites its config. SIGTERM (a
  // rollout) leaves it in place: pods created meanwhile wait for zmeshd (fail closed) rather
  // than start unmeshed; `zmesh-cni uninstall` takes it out.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  const timespec period{2, 0};
  for (;;) {
    if (sigtimedwait(&set, nullptr, &period) > 0) return 0;
    try {
      std::ifstream in(conflist_in(conf_dir));
      std::stringstream text;
      text << in.rdbuf();
      const json list = zmesh::parse_json(text.str());
      const auto& plugins = list.at("plugins");
      if (plugins.empty() || plugins.back().value("type", "") != "zmesh-cni") install(bin_dir, conf_dir, entry, false);
    } catch (const std::exception& e) {
      std::cerr << "zmesh-cni: watching " << conf_dir.string() << ": " << e.what() << '\n';
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) {
    try {
      return installer(argc, argv);
    } catch (const std::exception& e) {
      std::cerr << "zmesh-cni: " << e.what() << '\n';
      return 1;
    }
  }
  const std::string command = env("CNI_COMMAND");
  std::string version = "1.0.0";
  try {
    if (command == "VERSION") {
      std::cout << json_text(json{{"cniVersion", "1.0.0"}, {"supportedVersions", kVersions}}) << '\n';
      return 0;
    }
    if (command != "ADD" && command != "DEL" && command != "CHECK")
      throw CniError{kInvalidEnvironment, "CNI_COMMAND '" + command + "' is not ADD, DEL, CHECK or VERSION", ""};
    const json conf = read_config();
    version = conf["cniVersion"];
    if (command == "ADD") std::cout << json_text(add(conf)) << '\n';
    if (command == "DEL") del(conf);
    if (command == "CHECK") check(conf);
    return 0;
  } catch (const CniError& e) {
    std::cout << json_text(json{{"cniVersion", version}, {"code", e.code}, {"msg", e.msg}, {"details", e.details}})
              << '\n';
    return 1;
  } catch (const std::exception& e) {
    std::cout << json_text(json{{"cniVersion", version}, {"code", 999}, {"msg", "zmesh-cni failed"}, {"details", e.what()}})
              << '\n';
    return 1;
  }
}
