// The DaemonSet's privileges, proven (issue 19): the securityContext the chart renders (helm
// template), and the image's zmeshd run from the image's own root file system in lab nodes with
// exactly those capabilities (tests/tools/run_from_image.sh: capsh sets the bounding set, no new
// privileges, a read-only root, the host's /proc, /sys and /run mounted as the chart's
// hostPaths are). It passes its preflight and carries traffic across nodes; without any one of
// the capabilities it stops with the reason. No container can start on this machine (crun
// refuses its cgroup layout), so this is as close to the DaemonSet as it gets here.
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <net/if.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>

#include "echo.h"
#include "eventually.h"
#include "lab.h"
#include "netns.h"

namespace zmesh::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The container (or init container) `name` of the chart's DaemonSet, as `helm template` renders
// it with `values`.
json chart_container(const std::string& name, const std::vector<std::string>& values = {}) {
  const std::string helm = source_path(".tools/helm/helm");
  if (!fs::exists(helm)) {
    EXPECT_EQ(run({source_path("scripts/install-helm.sh")}).exit_code, 0);
  }
  std::vector<std::string> command{helm, "template", "z", source_path("helm/zmesh"), "--show-only",
                                   "templates/daemonset.yaml"};
  for (const auto& v : values) command.insert(command.end(), {"--set", v});
  const auto rendered = run(command);
  EXPECT_EQ(rendered.exit_code, 0) << rendered.err;
  const auto extracted = run({"python3", "-c",
                              "import json, sys, yaml\n"
                              "spec = yaml.safe_load(sys.argv[1])['spec']['template']['spec']\n"
                              "print(json.dumps(next(c for c in spec.get('initContainers', []) + spec['containers']\n"
                              "                      if c['name'] == sys.argv[2])))\n",
                              rendered.out, name});
  EXPECT_EQ(extracted.exit_code, 0) << extracted.err;
  return extracted.exit_code == 0 ? json::parse(extracted.out) : json::object();
}

// What a container runs: its command (none: the image's entrypoint) and its args.
std::vector<std::string> command_of(const json& container) {
  auto out = container.value("command", std::vector<std::string>{});
  const auto args = container.value("args", std::vector<std::string>{});
  out.insert(out.end(), args.begin(), args.end());
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

class PrivilegesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
  }
  // A zmeshd "binary" for `lab run-zmeshd --bin`: the image's, with exactly `caps`.
  std::string zmeshd_with(const std::vector<std::string>& caps) {
    std::string list;
    for (const auto& c : caps) list += (list.empty() ? "" : ",") + lower(c);
    if (list.empty()) list = "none";
    const std::string path = dir_ + "/zmeshd-with-" + list;
    std::ofstream(path) << "#!/bin/sh\nexec " << source_path("tests/tools/run_from_image.sh") << " " << rootfs_ << " "
                        << list << " \"$@\"\n";
    chmod(path.c_str(), 0755);
    return path;
  }
  // The image, made from this build and unpacked in the lab's state directory.
  void unpack_image() {
    dir_ = lab_->topology().at("stateDir").get<std::string>() + "/image";
    fs::create_directories(dir_);
    const std::string build = fs::path(bin_path("zmeshd")).parent_path().parent_path();
    const auto made = run({source_path("scripts/make-image"), build, dir_});
    ASSERT_EQ(made.exit_code, 0) << made.err;
    ASSERT_EQ(run({"tar", "-C", dir_, "-xf", dir_ + "/zmesh-image.oci.tar", "--one-top-level=oci"}).exit_code, 0);
    ASSERT_EQ(run({"umoci", "unpack", "--image", dir_ + "/oci:0.1.0", dir_ + "/bundle"}).exit_code, 0);
    rootfs_ = dir_ + "/bundle/rootfs";
  }
  // How many programs are attached by tcx to `ifname` of `node`, at tc ingress (or egress).
  uint32_t tcx_programs(const std::string& node, const std::string& ifname, bool egress = false) const {
    return NetnsThread(lab_->node(node).at("netns")).run([&] {
      const unsigned ifindex = if_nametoindex(ifname.c_str());
      uint32_t count = 0;
      // BPF_TCX_INGRESS / BPF_TCX_EGRESS (46, 47): libbpf 1.1 predates them; the target is the ifindex.
      bpf_prog_query(static_cast<int>(ifindex), static_cast<bpf_attach_type>(egress ? 47 : 46), 0, nullptr, nullptr,
                     &count);
      return count;
    });
  }
  static void stop(pid_t pid) {
    kill(pid, SIGTERM);
    eventually([&] { return kill(pid, 0) != 0; }, std::chrono::seconds(15));
  }
  void expect_traffic() {
    for (const auto& [from, to] : {std::pair{"app1-n1", "app1-n2"}, std::pair{"app1-n2", "app1-n1"}}) {
      const auto sent = echo_send(*lab_, from, lab_->pod(to).at("ip"), 8080, 1 << 20);
      EXPECT_EQ(sent.exit_code, 0) << from << " -> " << to << ": " << sent.out << sent.err << lab_->log("node1");
    }
  }

  std::unique_ptr<Lab> lab_;
  std::string dir_, rootfs_;
};

TEST_F(PrivilegesTest, TheImagesZmeshdRunsWithExactlyTheChartsCapabilitiesAndNeedsEachOne) {
  const json context = chart_container("zmeshd").at("securityContext");
  EXPECT_EQ(context.value("privileged", true), false) << context.dump();
  EXPECT_EQ(context.value("allowPrivilegeEscalation", true), false) << context.dump();
  EXPECT_EQ(context.value("readOnlyRootFilesystem", false), true) << context.dump();
  EXPECT_EQ(context.at("capabilities").at("drop"), json::array({"ALL"})) << context.dump();
  const auto granted = context.at("capabilities").at("add").get<std::vector<std::string>>();
  ASSERT_FALSE(granted.empty());

  lab_ = std::make_unique<Lab>(LabOptions{.nodes = 2, .pods = 1, .mesh = true, .restart_delay_ms = 0});
  unpack_image();
  if (HasFatalFailure()) return;
  auto servers = std::pair{echo_server(*lab_, "app1-n1", 8080, {"--connections", "100"}),
                           echo_server(*lab_, "app1-n2", 8080, {"--connections", "100"})};

  // The preflight, then both nodes' zmeshd, from the image with exactly the chart's capabilities.
  const auto preflight = run({zmeshd_with(granted), "--check", "--bpf-root", lab_->node("node1").at("bpfRoot")});
  EXPECT_EQ(preflight.exit_code, 0) << preflight.out << preflight.err;
  std::map<std::string, std::unique_ptr<Process>> daemons;
  for (const std::string node : {"node1", "node2"}) {
    stop(lab_->node(node).at("zmeshd").at("pid").get<pid_t>());
    daemons[node] = std::make_unique<Process>(lab_->zmeshd_command(node, {}, zmeshd_with(granted)), Process::Stderr::Merge);
    ASSERT_TRUE(lab_->wait_ready(node)) << node << " did not come up from the image with " << context.dump();
  }
  expect_traffic();

  // Each capability the chart grants is needed: without it, zmeshd stops and says why (on the
  // pins its predecessor left, as after any restart).
  daemons["node1"]->kill(SIGTERM);
  EXPECT_EQ(daemons["node1"]->wait(), 0) << "a drained exit";
  for (const auto& missing : granted) {
    SCOPED_TRACE("without " + missing);
    std::vector<std::string> fewer;
    std::copy_if(granted.begin(), granted.end(), std::back_inserter(fewer), [&](const auto& c) { return c != missing; });
    daemons["node1"] = std::make_unique<Process>(lab_->zmeshd_command("node1", {}, zmeshd_with(fewer)), Process::Stderr::Merge);
    std::string seen;
    EXPECT_TRUE(daemons["node1"]->wait_for("zmesh needs root, or CAP_NET_ADMIN + CAP_SYS_ADMIN", &seen)) << "it ran without " << missing << ": " << seen;
    EXPECT_NE(daemons["node1"]->wait(), 0) << seen;
  }

  // Back with the chart's set: it adopts its pins and carries traffic again.
  daemons["node1"] = std::make_unique<Process>(lab_->zmeshd_command("node1", {}, zmeshd_with(granted)), Process::Stderr::Merge);
  ASSERT_TRUE(lab_->wait_ready("node1"));
  expect_traffic();
  for (auto& [node, daemon] : daemons) {
    daemon->kill(SIGTERM);
    EXPECT_EQ(daemon->wait(), 0) << node;
  }
}

// Uninstall, step 1 (helm/zmesh/README.md): the chart's cleanup mode, its init container's
// command run from the image on each lab node with the chart's capabilities, after the node's
// zmeshd was stopped as a rollout stops it. Afterwards nothing of zmesh is attached to the
// pods' cgroups, nothing is pinned, the routing rule is gone, and traffic flows as without a
// mesh: plaintext from a node reaches a STRICT pod (tc dropped it while zmesh was there).
TEST_F(PrivilegesTest, TheChartsCleanupModeLeavesNodesAsWithoutAMesh) {
  lab_ = std::make_unique<Lab>(LabOptions{.nodes = 2, .pods = 1, .mesh = true, .restart_delay_ms = 0});
  unpack_image();
  if (HasFatalFailure()) return;
  const auto granted = chart_container("zmeshd").at("securityContext").at("capabilities").at("add").get<std::vector<std::string>>();
  auto cleanup = command_of(chart_container("cleanup", {"cleanup=true"}));
  ASSERT_EQ(cleanup.size(), 2u);
  ASSERT_EQ(cleanup[0], "--cleanup");
  auto server = echo_server(*lab_, "app1-n2", 8080, {"--connections", "100"});
  const std::string strict_pod = lab_->pod("app1-n2").at("ip");
  EXPECT_NE(echo_send(*lab_, "node1", strict_pod, 8080, 1000, {"--connect-timeout-ms", "1500"}).exit_code, 0)
      << "with zmesh, plaintext to a STRICT pod is refused";

  ASSERT_GT(tcx_programs("node1", "eth0"), 0u) << "zmesh's tc program on the uplink (the control)";
  ASSERT_GT(tcx_programs("node1", "vpod1", true), 0u) << "and the pod's door";
  for (const std::string node : {"node1", "node2"}) {
    stop(lab_->node(node).at("zmeshd").at("pid").get<pid_t>());
    // The chart's --bpf-root is the node's bpffs/zmesh; the lab's nodes have one each.
    cleanup[1] = "--bpf-root=" + lab_->node(node).at("bpfRoot").get<std::string>();
    std::vector<std::string> command{zmeshd_with(granted)};
    command.insert(command.end(), cleanup.begin(), cleanup.end());
    const auto cleaned = run(lab_->exec(node, command));
    EXPECT_EQ(cleaned.exit_code, 0) << node << ": " << cleaned.out << cleaned.err;
    EXPECT_FALSE(fs::exists(lab_->node(node).at("bpfRoot").get<std::string>())) << node << " keeps pins";
    const auto rules = run(lab_->exec(node, {"ip", "rule"}));
    EXPECT_EQ(rules.out.find("0x5a0"), std::string::npos) << node << ": " << rules.out;
    for (const char* ifname : {"eth0", "vpod1"})
      EXPECT_EQ(tcx_programs(node, ifname) + tcx_programs(node, ifname, true), 0u) << node << " " << ifname;
  }
  for (const std::string pod : {"app1-n1", "app1-n2"}) {
    const std::string cgroup = lab_->pod(pod).at("cgroup");
    EXPECT_EQ(attached_programs(cgroup, BPF_CGROUP_INET4_CONNECT) + attached_programs(cgroup, BPF_CGROUP_INET6_CONNECT) +
                  attached_programs(cgroup, BPF_CGROUP_SOCK_OPS),
              0u)
        << pod;
  }
  EXPECT_EQ(echo_send(*lab_, "app1-n1", strict_pod, 8080).exit_code, 0) << "pod to pod, plain";
  EXPECT_EQ(echo_send(*lab_, "node1", strict_pod, 8080).exit_code, 0) << "tc still drops plaintext to the pod";

  // The CNI entry, put into a chain as the chart's install-cni container puts it, is taken out
  // by cleanup mode's uninstall-cni container, run from the image (its hostPaths here: dirs
  // of the lab's).
  const std::string cni = dir_ + "/cni";
  fs::create_directories(cni + "/bin");
  fs::create_directories(cni + "/net.d");
  std::ofstream(cni + "/net.d/10-ptp.conflist") << R"({"cniVersion": "1.0.0", "name": "lab", "plugins": [{"type": "ptp"}]})";
  ASSERT_EQ(run({bin_path("zmesh-cni"), "install", "--bin-dir=" + cni + "/bin", "--conf-dir=" + cni + "/net.d"}).exit_code, 0);
  auto plugins = [&] {
    std::ifstream in(cni + "/net.d/10-ptp.conflist");
    return json::parse(in).at("plugins");
  };
  ASSERT_EQ(plugins().back().at("type"), "zmesh-cni");
  auto uninstall_cni = command_of(chart_container("uninstall-cni", {"cleanup=true", "cni.enabled=true", "podCidrs={10.244.0.0/16}"}));
  ASSERT_GE(uninstall_cni.size(), 2u);
  ASSERT_EQ(uninstall_cni[1], "uninstall");
  std::vector<std::string> command{"env", "RUN_FROM_IMAGE_BINARY=" + uninstall_cni[0], zmeshd_with({})};
  for (size_t i = 1; i < uninstall_cni.size(); ++i) {
    std::string arg = uninstall_cni[i];
    if (const auto at = arg.find("/host/cni"); at != std::string::npos) arg.replace(at, 9, cni);
    command.push_back(arg);
  }
  const auto removed = run(command);
  EXPECT_EQ(removed.exit_code, 0) << removed.out << removed.err;
  EXPECT_EQ(plugins().size(), 1u) << plugins().dump();
  EXPECT_FALSE(fs::exists(cni + "/bin/zmesh-cni"));

  // The pod that stays (`--hold`) runs with no capability at all and ends on SIGTERM.
  const auto hold = command_of(chart_container("hold", {"cleanup=true"}));
  ASSERT_EQ(hold, std::vector<std::string>{"--hold"});
  Process holding({zmeshd_with({}), "--hold"}, Process::Stderr::Merge);
  ASSERT_TRUE(holding.wait_for("holding"));
  holding.kill(SIGTERM);
  EXPECT_EQ(holding.wait(), 0);
}

}  // namespace
}  // namespace zmesh::test
