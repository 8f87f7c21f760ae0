// zmesh-cni with the real CNI plugins from containernetworking-plugins, invoked as a container
// runtime invokes them: `ptp` (with `host-local` IPAM) makes a pod on lab node1, then
// `zmesh-cni` enrolls it with node1's zmeshd. The pod talks over mTLS with a lab pod on node2,
// both ways: node2 learns of it only through its pod CIDR (--pod-cidr). Then CHECK, DEL, bad
// input, zmeshd down, start-up reconciliation, and the installer.
//
// A "pod" here is what a runtime's sandbox is: a netns (zm-<lab>-app9P-n1, so `lab down`
// removes it) with a process in a cgroup of its own under node1's.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "cni.h"
#include "echo.h"
#include "lab.h"
#include "metrics.h"
#include "eventually.h"

namespace zmesh::test {
namespace {

constexpr const char* kClosed = "istio_tcp_connections_closed_total";

namespace fs = std::filesystem;
using nlohmann::json;

class CniTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
    if (!fs::exists(std::string(kCniPath) + "/ptp")) GTEST_SKIP() << "no " << kCniPath << "/ptp (scripts/install-deps.sh)";
    lab_ = std::make_unique<Lab>(LabOptions{.nodes = 2,
                                            .pods = 1,
                                            .mesh = true,
                                            .zmeshd_args = {"--pod-cidr", "10.244.0.0/16", "--pod-cidr",
                                                            "fd00:244::/32", "--gc-interval-ms", "300"}});
  }
  std::string state() const { return lab_->topology().at("stateDir"); }
  std::string socket(const std::string& node = "node1") const {
    return lab_->node(node).at("zmeshd").at("controlSocket");
  }

  using Pod = CniPod;
  Pod sandbox(const std::string& name, const std::string& k8s_name) const { return cni_sandbox(*lab_, name, k8s_name); }
  static std::vector<std::string> in_pod(const Pod& pod, const std::vector<std::string>& command) {
    return in_cni_pod(pod, command);
  }
  Result plugin(const std::string& type, const std::string& command, const Pod& pod, const json& conf,
                const std::string& args) const {
    return cni_plugin(*lab_, type, command, pod, conf, args);
  }
  json ptp_conf() const { return cni_ptp_conf(*lab_); }
  json zmesh_conf(const json& prev, const std::string& sock = "") const {
    json conf = {{"cniVersion", "1.0.0"}, {"name", "lab"}, {"type", "zmesh-cni"},
                 {"socket", sock.empty() ? socket() : sock}};
    if (!prev.is_null()) conf["prevResult"] = prev;
    return conf;
  }
  static std::string k8s_args(const std::string& name, const std::string& ns = "default") {
    return cni_k8s_args(name, ns);
  }
  // ptp then zmesh-cni ADD: returns ptp's result (the chain's prevResult) and zmesh-cni's.
  std::pair<json, Result> add(const Pod& pod, const std::string& args) const {
    auto ptp = plugin("ptp", "ADD", pod, ptp_conf(), args);
    EXPECT_EQ(ptp.exit_code, 0) << ptp.out << ptp.err;
    const json prev = json::parse(ptp.out);
    return {prev, plugin("zmesh-cni", "ADD", pod, zmesh_conf(prev), args)};
  }
  json maps(const std::string& node) const {
    auto r = lab_->zmeshctl(node, {"maps"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out);
  }
  static bool has_ip(const json& entries, const std::string& ip) {
    for (const auto& e : entries)
      if (e.at("ip") == ip) return true;
    return false;
  }
  static std::string pod_ip(const json& result) {
    const std::string cidr = result.at("ips").at(0).at("address");
    return cidr.substr(0, cidr.find('/'));
  }

  std::unique_ptr<Lab> lab_;
};

TEST_F(CniTest, AChainedAddMeshesThePodAndDelLeavesNothing) {
  Pod pod = sandbox("app91-n1", "cni-pod");
  const std::string args = k8s_args("cni-pod");
  auto [prev, added] = add(pod, args);
  ASSERT_EQ(added.exit_code, 0) << added.out << added.err;
  const json result = json::parse(added.out);
  EXPECT_EQ(result.at("ips"), prev.at("ips")) << "zmesh-cni passes the main plugin's result on";
  EXPECT_EQ(result.at("cniVersion"), "1.0.0");
  const std::string ip = pod_ip(prev);

  // Enrolled with what the chain and the sandbox tell: IPs, veth, cgroup, identity.
  bool found = false;
  const auto listed = lab_->zmeshctl("node1", {"workloads"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  for (const auto& w : json::parse(listed.out)) {
    if (w.at("name") != "cni-pod") continue;
    found = true;
    EXPECT_EQ(w.at("source"), "runtime");
    EXPECT_EQ(w.at("enrolledHere"), true);
    EXPECT_EQ(w.at("workloadIps").at(0), ip);
    EXPECT_EQ(w.at("cgroup"), pod.cgroup);
    EXPECT_EQ(w.at("identity"), "spiffe://cluster.local/ns/default/sa/cni-sa");
    EXPECT_EQ(w.at("hostVeth").get<std::string>().rfind("veth", 0), 0u) << w.dump();
  }
  EXPECT_TRUE(found);
  EXPECT_TRUE(has_ip(maps("node1").at("workloads"), ip));
  EXPECT_EQ(maps("node2").at("podCidrs"), json::array({"10.244.0.0/16", "fd00:244::/32"}));
  // The pods' gateway lies inside their pod CIDR but is the node itself: never captured.
  auto gateway = run(lab_->exec("app1-n1", {"curl", "-sS", "--max-time", "5", "http://10.244.1.1:15021/healthz/ready"}));
  EXPECT_EQ(gateway.out, "ready\n") << gateway.err;

  // The pod -> app1-n2 (node2), and app1-n2 -> the pod: HBONE both ways, identities checked.
  auto on_lab_pod = echo_server(*lab_, "app1-n2", 8080);
  auto out = run(in_pod(pod, {bin_path("zm-echo"), "send", "--to", lab_->pod("app1-n2").at("ip"), "--port", "8080",
                              "--bytes", "65536"}));
  ASSERT_EQ(out.exit_code, 0) << out.out << out.err;
  EXPECT_TRUE(json::parse(out.out).at("match").get<bool>());
  const std::string cni_sa = "spiffe://cluster.local/ns/default/sa/cni-sa";
  const Labels from_pod = {{"reporter", "destination"}, {"source_principal", cni_sa}, {"destination_workload", "app1-n2"}};
  EXPECT_EQ(await_metric(*lab_, "node2", kClosed, from_pod, 1).sum(kClosed, from_pod), 1)
      << "node2 knew the pod by its identity";
  Process server(in_pod(pod, {bin_path("zm-echo"), "serve", "--port", "8080"}));
  ASSERT_TRUE(server.wait_for("listening").has_value());
  const double handshakes = Metrics::scrape(*lab_, "node2").sum("zmesh_tls_handshakes_total", {{"side", "client"}});
  auto in = echo_send(*lab_, "app1-n2", ip, 8080, 65536);
  ASSERT_EQ(in.exit_code, 0) << in.out << in.err;
  const Labels to_pod = {{"reporter", "destination"}, {"source_workload", "app1-n2"}, {"destination_principal", cni_sa}};
  const auto node1 = await_metric(*lab_, "node1", kClosed, to_pod, 1);
  EXPECT_EQ(node1.sum(kClosed, to_pod), 1) << "node1 served it over HBONE as the pod's identity: " << node1;
  EXPECT_GT(Metrics::scrape(*lab_, "node2").sum("zmesh_tls_handshakes_total", {{"side", "client"}}), handshakes)
      << "node2 opened an HBONE connection to the pod's identity";

  // CHECK agrees; DEL (zmesh-cni, then ptp, as a runtime goes backwards) leaves nothing.
  auto checked = plugin("zmesh-cni", "CHECK", pod, zmesh_conf(prev), args);
  EXPECT_EQ(checked.exit_code, 0) << checked.out;
  EXPECT_EQ(plugin("zmesh-cni", "DEL", pod, zmesh_conf(prev), args).exit_code, 0);
  EXPECT_EQ(plugin("ptp", "DEL", pod, ptp_conf(), args).exit_code, 0);
  const json after = maps("node1");
  EXPECT_FALSE(has_ip(after.at("workloads"), ip));
  EXPECT_FALSE(has_ip(after.at("destinations"), ip));
  EXPECT_EQ(lab_->zmeshctl("node1", {"workloads"}).out.find("cni-pod"), std::string::npos);
  auto gone = plugin("zmesh-cni", "CHECK", pod, zmesh_conf(prev), args);
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_EQ(json::parse(gone.out).at("code"), 100) << gone.out;
  EXPECT_EQ(plugin("zmesh-cni", "DEL", pod, zmesh_conf(prev), args).exit_code, 0) << "DEL twice is fine";
}

TEST_F(CniTest, BadInputZmeshdDownOptOutsAndRestartReconciliation) {
  Pod pod = sandbox("app92-n1", "p");
  auto code_of = [](const Result& r) { return json::parse(r.out).at("code").get<int>(); };
  // Malformed: not JSON (6), no prevResult (7), bad version (1), no pod name (4), unknown command (4).
  const std::string file = state() + "/garbage.json";
  std::ofstream(file) << "{\"cniVersion\": ";
  auto garbage = run(lab_->exec("node1", {"env", "CNI_COMMAND=ADD", "sh", "-c", "exec \"$0\" < \"$1\"",
                                          bin_path("zmesh-cni"), file}));
  EXPECT_EQ(garbage.exit_code, 1);
  EXPECT_EQ(code_of(garbage), 6) << garbage.out;
  EXPECT_EQ(code_of(plugin("zmesh-cni", "ADD", pod, zmesh_conf(nullptr), k8s_args("p"))), 7);
  auto old = zmesh_conf(json::object());
  old["cniVersion"] = "0.1.0";
  EXPECT_EQ(code_of(plugin("zmesh-cni", "ADD", pod, old, k8s_args("p"))), 1);
  EXPECT_EQ(code_of(plugin("zmesh-cni", "ADD", pod, zmesh_conf(json::object()), "IgnoreUnknown=1;K8S_POD_NAME=p")), 4);
  EXPECT_EQ(code_of(plugin("zmesh-cni", "FROB", pod, zmesh_conf(json::object()), k8s_args("p"))), 4);
  // A name Kubernetes would not give (a '/' once enrolled a pod that DEL could never remove):
  // refused by ADD; DEL of it succeeds, since nothing was enrolled.
  auto slash = plugin("zmesh-cni", "ADD", pod, zmesh_conf(json::object()), k8s_args("a/b"));
  EXPECT_EQ(code_of(slash), 4) << slash.out;
  EXPECT_NE(slash.out.find("is not a Kubernetes namespace and pod name"), std::string::npos) << slash.out;
  EXPECT_EQ(plugin("zmesh-cni", "DEL", pod, zmesh_conf(json::object()), k8s_args("a/b")).exit_code, 0);
  auto version = plugin("zmesh-cni", "VERSION", pod, json::object(), "");
  // No pod cgroup for that UID: refused (never a guessed cgroup).
  auto prev_stub = json::parse(R"({"cniVersion": "1.0.0", "ips": [{"address": "10.244.1.119/24"}]})");
  auto nocg = plugin("zmesh-cni", "ADD", pod, zmesh_conf(prev_stub), k8s_args("nobody"));
  EXPECT_EQ(code_of(nocg), 11) << nocg.out;
  EXPECT_NE(nocg.out.find("no cgroup for pod UID 0000-nobody"), std::string::npos) << nocg.out;
  EXPECT_EQ(json::parse(version.out).at("supportedVersions"), json::array({"0.4.0", "1.0.0"}));

  auto ptp = plugin("ptp", "ADD", pod, ptp_conf(), k8s_args("p"));
  ASSERT_EQ(ptp.exit_code, 0) << ptp.err;
  const json prev = json::parse(ptp.out);
  // zmeshd unreachable: ADD fails closed (11, try again), unless the config says failOpen.
  const std::string nowhere = state() + "/no-zmeshd.sock";
  auto closed = plugin("zmesh-cni", "ADD", pod, zmesh_conf(prev, nowhere), k8s_args("p"));
  EXPECT_EQ(closed.exit_code, 1);
  EXPECT_EQ(code_of(closed), 11);
  EXPECT_NE(closed.out.find("could not enroll default/p"), std::string::npos) << closed.out;
  auto open_conf = zmesh_conf(prev, nowhere);
  open_conf["failOpen"] = true;
  auto opened = plugin("zmesh-cni", "ADD", pod, open_conf, k8s_args("p"));
  EXPECT_EQ(opened.exit_code, 0);
  EXPECT_NE(opened.err.find("is NOT meshed (failOpen)"), std::string::npos) << opened.err;
  // Opted out: kube-system by default, or ZMESH_MESH=false.
  EXPECT_EQ(plugin("zmesh-cni", "ADD", pod, zmesh_conf(prev), k8s_args("p", "kube-system")).exit_code, 0);
  EXPECT_EQ(plugin("zmesh-cni", "ADD", pod, zmesh_conf(prev), k8s_args("p") + ";ZMESH_MESH=false").exit_code, 0);
  EXPECT_FALSE(has_ip(maps("node1").at("workloads"), pod_ip(prev))) << "neither was enrolled";

  // Enrolled, then its cgroup goes with no DEL (the runtime's DEL failed): zmeshd notices on
  // its own and frees the address.
  Pod lost = sandbox("app93-n1", "lost");
  ASSERT_EQ(plugin("zmesh-cni", "ADD", lost, zmesh_conf(prev), k8s_args("lost")).exit_code, 0);
  ASSERT_TRUE(has_ip(maps("node1").at("workloads"), pod_ip(prev)));
  ASSERT_EQ(rmdir(lost.cgroup.c_str()), 0);
  EXPECT_TRUE(eventually([&] { return !has_ip(maps("node1").at("workloads"), pod_ip(prev)); }));
  EXPECT_TRUE(lab_->log_shows("node1", "pods gone without a DEL (cgroup removed): default/lost")) << lab_->log("node1");

  // Enrolled, then the pod vanishes while zmeshd is down (no DEL reaches it): the next zmeshd
  // drops it from the runtime layer and the kernel. (Stopped first: a running zmeshd would
  // notice the cgroup go on its own, as above.)
  ASSERT_EQ(plugin("zmesh-cni", "ADD", pod, zmesh_conf(prev), k8s_args("p")).exit_code, 0);
  ASSERT_TRUE(has_ip(maps("node1").at("workloads"), pod_ip(prev)));
  const pid_t zmeshd = lab_->node("node1").at("zmeshd").at("pid").get<pid_t>();
  ASSERT_EQ(kill(zmeshd, SIGTERM), 0);
  ASSERT_TRUE(exits(zmeshd)) << "zmeshd did not stop on SIGTERM";
  eventually([&] { return rmdir(pod.cgroup.c_str()) == 0; });  // once the pod's processes are gone
  ASSERT_FALSE(fs::exists(pod.cgroup));
  lab_->restart("node1");
  EXPECT_TRUE(lab_->log_shows("node1", "default/p left while zmeshd was down")) << lab_->log("node1");
  EXPECT_FALSE(has_ip(maps("node1").at("workloads"), pod_ip(prev)));
  EXPECT_EQ(json::parse(lab_->zmeshctl("node1", {"status"}).out).at("runtimeWorkloads"), 0);
}

TEST(ZmeshCniInstaller, AddsItselfToTheConflistAndRemovesItself) {
  const fs::path dir = fs::temp_directory_path() / ("zmesh-cni-install-" + std::to_string(getpid()));
  fs::create_directories(dir / "bin");
  fs::create_directories(dir / "net.d");
  std::ofstream(dir / "net.d/10-ptp.conflist")
      << R"({"cniVersion": "1.0.0", "name": "k8s", "plugins": [{"type": "ptp"}, {"type": "portmap"}]})";
  std::ofstream(dir / "net.d/99-other.conflist") << R"({"cniVersion": "1.0.0", "name": "x", "plugins": []})";
  const std::vector<std::string> where{"--bin-dir", (dir / "bin").string(), "--conf-dir", (dir / "net.d").string()};
  auto install = [&](const std::string& command) {
    std::vector<std::string> argv{bin_path("zmesh-cni"), command};
    argv.insert(argv.end(), where.begin(), where.end());
    return run(argv);
  };
  auto conflist = [&](const char* name) {
    std::ifstream in(dir / "net.d" / name);
    return json::parse(in);
  };
  ASSERT_EQ(install("install").exit_code, 0);
  ASSERT_EQ(install("install").exit_code, 0) << "twice is once";
  auto plugins = conflist("10-ptp.conflist").at("plugins");
  ASSERT_EQ(plugins.size(), 3u) << plugins.dump();
  EXPECT_EQ(plugins[2].at("type"), "zmesh-cni") << "last in the chain, after the main plugin";
  EXPECT_EQ(plugins[2].at("failOpen"), false);
  EXPECT_EQ(conflist("99-other.conflist").at("plugins").size(), 0u) << "only the list the runtime uses";
  struct stat st{};
  ASSERT_EQ(stat((dir / "bin/zmesh-cni").c_str(), &st), 0);
  EXPECT_TRUE(st.st_mode & S_IXUSR);
  auto version = run({"env", "CNI_COMMAND=VERSION", (dir / "bin/zmesh-cni").string()});
  EXPECT_NE(version.out.find("1.0.0"), std::string::npos) << "the copy runs";
  ASSERT_EQ(install("uninstall").exit_code, 0);
  EXPECT_EQ(conflist("10-ptp.conflist").at("plugins").size(), 2u);
  // Fed by istiod: pods are enrolled without a service account, their identity from xDS.
  std::vector<std::string> with_xds{bin_path("zmesh-cni"), "install", "--identity-from-xds"};
  with_xds.insert(with_xds.end(), where.begin(), where.end());
  ASSERT_EQ(run(with_xds).exit_code, 0);
  EXPECT_EQ(conflist("10-ptp.conflist").at("plugins").at(2).at("identityFromXds"), true);
  ASSERT_EQ(install("uninstall").exit_code, 0);
  EXPECT_FALSE(fs::exists(dir / "bin/zmesh-cni"));
  // A single-plugin .conf sorts first: that is what the runtime uses, and it cannot chain.
  std::ofstream(dir / "net.d/05-bridge.conf") << R"({"cniVersion": "1.0.0", "name": "b", "type": "bridge"})";
  auto single = install("install");
  EXPECT_EQ(single.exit_code, 1);
  EXPECT_NE(single.err.find("05-bridge.conf, a single-plugin config"), std::string::npos) << single.err;
  fs::remove(dir / "net.d/05-bridge.conf");
  // --wait puts the entry back when the main plugin rewrites its config, and leaves it on SIGTERM.
  std::vector<std::string> argv{bin_path("zmesh-cni"), "install", "--wait"};
  argv.insert(argv.end(), where.begin(), where.end());
  {
    Process waiting(argv, Process::Stderr::Merge);
    ASSERT_TRUE(waiting.wait_for("added to").has_value());
    std::ofstream(dir / "net.d/10-ptp.conflist")
        << R"({"cniVersion": "1.0.0", "name": "k8s", "plugins": [{"type": "ptp"}]})";  // as Calico would
    ASSERT_TRUE(waiting.wait_for("added to").has_value()) << "re-added";
    waiting.kill(SIGTERM);
    EXPECT_EQ(waiting.wait(), 0);
  }
  EXPECT_EQ(conflist("10-ptp.conflist").at("plugins").back().at("type"), "zmesh-cni") << "SIGTERM leaves it";
  fs::remove(dir / "net.d/10-ptp.conflist");
  fs::remove(dir / "net.d/99-other.conflist");
  auto none = install("install");
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("no CNI config in"), std::string::npos) << none.err;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace zmesh::test
