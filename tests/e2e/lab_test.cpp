// The lab: a mesh of namespaces on one machine (scripts/lab), which every later end-to-end
// test, the demo and the benchmarks stand on.
//
//   fabric netns (br0) ── node1 netns (10.100.0.1) ── vpodP ══ eth0 app<P>-n1 (10.244.1.<P+1>)
//                     └── node2 netns (10.100.0.2) ── vpodP ══ eth0 app<P>-n2 (10.244.2.<P+1>)
//
// Real namespaces, veths and cgroups; real TCP bytes between pods, checked byte by byte.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "lab.h"
#include "zmesh/probe.h"

namespace zmesh::test {
namespace {

namespace fs = std::filesystem;

class LabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root (namespaces, cgroups)";
  }
};

bool netns_exists(const std::string& name) { return fs::exists("/run/netns/" + name); }

// Echo server in `server_pod` on `port`, `sender_pod` sends `bytes` to `address`; returns the
// server's view of the connection (its "peer" is the sender as the server saw it).
nlohmann::json transfer(const Lab& lab, const std::string& server_pod, const std::string& sender_pod,
                        const std::string& address, int port, int bytes = 1 << 20) {
  Process server(lab.exec(server_pod, {bin_path("zm-echo"), "serve", "--port", std::to_string(port)}));
  auto ready = server.read_line();
  EXPECT_TRUE(ready.has_value()) << "echo server in " << server_pod << " did not start";
  if (!ready) return {};
  auto sent = run(lab.exec(sender_pod, {bin_path("zm-echo"), "send", "--to", address, "--port",
                                        std::to_string(port), "--bytes", std::to_string(bytes)}));
  EXPECT_EQ(sent.exit_code, 0) << sender_pod << " -> " << address << ": " << sent.err << sent.out;
  if (sent.exit_code != 0) return {};
  auto report = nlohmann::json::parse(sent.out);
  EXPECT_TRUE(report.at("match").get<bool>());
  EXPECT_EQ(report.at("received"), bytes);
  auto seen = server.read_line();
  EXPECT_EQ(server.wait(), 0);
  return seen ? nlohmann::json::parse(*seen) : nlohmann::json{};
}

TEST_F(LabTest, TopologyDescribesEveryNodeAndPod) {
  Lab lab({.nodes = 2, .pods = 2});
  const auto& topo = lab.topology();
  EXPECT_EQ(topo.at("name"), lab.name());
  ASSERT_EQ(topo.at("nodes").size(), 2u);
  ASSERT_EQ(topo.at("pods").size(), 4u);
  for (const auto& node : topo.at("nodes")) {
    EXPECT_TRUE(netns_exists(node.at("netns"))) << node.dump();
    for (const char* field : {"name", "ip", "ip6", "podCidr", "gateway", "bpfRoot", "cgroup"})
      EXPECT_TRUE(node.contains(field)) << field;
  }
  for (const auto& pod : topo.at("pods")) {
    EXPECT_TRUE(netns_exists(pod.at("netns"))) << pod.dump();
    EXPECT_TRUE(fs::is_directory(pod.at("cgroup").get<std::string>())) << pod.dump();
    for (const char* field : {"name", "node", "ip", "ip6", "namespace", "serviceAccount", "hostVeth"})
      EXPECT_TRUE(pod.contains(field)) << field;
  }
  EXPECT_EQ(lab.pod("app2-n1").at("ip"), "10.244.1.3");
  EXPECT_EQ(lab.pod("app2-n1").at("serviceAccount"), "app2");
  // The topology file `up` printed is the one `show` prints.
  auto shown = run_lab({"show", "--name", lab.name()});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_EQ(nlohmann::json::parse(shown.out), topo);
}

TEST_F(LabTest, PodsReachPodsOnOtherNodesOverIpv4AndIpv6WithoutNat) {
  Lab lab;
  const auto from = lab.pod("app1-n1");
  auto seen4 = transfer(lab, "app1-n2", "app1-n1", lab.pod("app1-n2").at("ip"), 7001);
  EXPECT_EQ(seen4.value("bytes", 0), 1 << 20);
  EXPECT_EQ(seen4.value("peer", "").rfind(from.at("ip").get<std::string>() + ":", 0), 0u) << seen4.dump();
  auto seen6 = transfer(lab, "app2-n2", "app1-n1", lab.pod("app2-n2").at("ip6"), 7002);
  EXPECT_EQ(seen6.value("peer", "").rfind("[" + from.at("ip6").get<std::string>() + "]:", 0), 0u)
      << seen6.dump();
}

TEST_F(LabTest, PodsReachPodsOnTheSameNode) {
  Lab lab;
  auto seen = transfer(lab, "app1-n1", "app2-n1", lab.pod("app1-n1").at("ip"), 7003, 4 << 20);
  EXPECT_EQ(seen.value("bytes", 0), 4 << 20);
}

TEST_F(LabTest, ExecRunsInThePodsNetnsAndCgroup) {
  Lab lab;
  const auto& pod = lab.pod("app2-n2");
  auto cgroup = run(lab.exec("app2-n2", {"cat", "/proc/self/cgroup"}));
  ASSERT_EQ(cgroup.exit_code, 0) << cgroup.err;
  // cgroup v2 line "0::/zmesh-lab-<name>/node2/app2-n2"
  const std::string expected = "/zmesh-lab-" + lab.name() + "/node2/app2-n2";
  EXPECT_NE(cgroup.out.find("0::" + expected + "\n"), std::string::npos) << cgroup.out;
  auto addr = run(lab.exec("app2-n2", {"ip", "-o", "addr", "show", "dev", "eth0"}));
  EXPECT_NE(addr.out.find(pod.at("ip").get<std::string>() + "/32"), std::string::npos) << addr.out;

  auto unknown = run(lab.exec("no-such-pod", {"true"}));
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.err.find("no pod or node 'no-such-pod'"), std::string::npos) << unknown.err;
}

TEST_F(LabTest, DownRemovesNamespacesCgroupsPinsAndProcesses) {
  Lab lab;
  const auto topo = lab.topology();
  // A long-running process in a pod and one in a node, as a workload and zmeshd would be.
  // Each says so once it runs inside (before that, `down` would race its start, not kill it).
  Process in_pod(lab.exec("app1-n1", {"sh", "-c", "echo inside; exec sleep 600"}));
  Process in_node(lab.exec("node2", {"sh", "-c", "echo inside; exec sleep 600"}));
  ASSERT_TRUE(in_pod.wait_for("inside").has_value());
  ASSERT_TRUE(in_node.wait_for("inside").has_value());
  // A real pinned map under the node's pin root, as zmeshd will leave there.
  const fs::path pin_dir = topo.at("nodes")[0].at("bpfRoot").get<std::string>();
  fs::create_directories(pin_dir);
  PipelineProbe probe;
  probe.pin_counters(pin_dir / "zm_probe_cnt");

  auto down = lab.down();
  ASSERT_EQ(down.exit_code, 0) << down.err;
  EXPECT_EQ(in_pod.wait(std::chrono::seconds(5)), 128 + SIGKILL);
  EXPECT_EQ(in_node.wait(std::chrono::seconds(5)), 128 + SIGKILL);
  for (const auto& node : topo.at("nodes")) EXPECT_FALSE(netns_exists(node.at("netns")));
  for (const auto& pod : topo.at("pods")) EXPECT_FALSE(netns_exists(pod.at("netns")));
  EXPECT_FALSE(netns_exists(topo.at("fabricNetns")));
  EXPECT_FALSE(fs::exists(topo.at("cgroupRoot").get<std::string>()));
  EXPECT_FALSE(fs::exists(topo.at("bpfRoot").get<std::string>()));
  EXPECT_FALSE(fs::exists(topo.at("stateDir").get<std::string>()));
  auto links = run({"ip", "-o", "link", "show"});
  EXPECT_EQ(links.out.find("vpod"), std::string::npos) << "a pod veth leaked into this netns";

  auto again = run_lab({"down", "--name", lab.name()});
  EXPECT_EQ(again.exit_code, 0) << "a second down must be harmless: " << again.err;
}

TEST_F(LabTest, TwoLabsSideBySideWithTheSameAddresses) {
  Lab a;
  Lab b;
  ASSERT_NE(a.name(), b.name());
  EXPECT_EQ(a.pod("app1-n2").at("ip"), b.pod("app1-n2").at("ip"));
  transfer(a, "app1-n2", "app1-n1", a.pod("app1-n2").at("ip"), 7004);
  transfer(b, "app1-n2", "app1-n1", b.pod("app1-n2").at("ip"), 7004);
  ASSERT_EQ(a.down().exit_code, 0);
  // Taking one lab down leaves the other whole.
  transfer(b, "app2-n2", "app2-n1", b.pod("app2-n2").at("ip"), 7005);
  for (const auto& pod : b.topology().at("pods")) EXPECT_TRUE(netns_exists(pod.at("netns")));
}

TEST_F(LabTest, ALabsNameIsNotAPrefixOfAnother) {
  // Lab "X" and lab "X-2": taking X down must leave X-2 whole.
  const std::string name = Lab::unique_name();
  ASSERT_EQ(run_lab({"up", "--name", name, "--nodes", "1", "--pods", "1", "--no-mesh"}).exit_code, 0);
  ASSERT_EQ(run_lab({"up", "--name", name + "-2", "--nodes", "1", "--pods", "1", "--no-mesh"}).exit_code, 0);
  EXPECT_EQ(run_lab({"down", "--name", name}).exit_code, 0);
  EXPECT_TRUE(netns_exists("zm-" + name + "-2-node1"));
  EXPECT_TRUE(netns_exists("zm-" + name + "-2-app1-n1"));
  EXPECT_EQ(run_lab({"down", "--name", name + "-2"}).exit_code, 0);
  EXPECT_FALSE(netns_exists("zm-" + name + "-2-node1"));
}

TEST_F(LabTest, UpRejectsBadInputAndLeavesNothing) {
  struct Case {
    std::vector<std::string> args;
    const char* message;
  } cases[] = {
      {{"up", "--name", "Bad_Name"}, "bad lab name 'Bad_Name'"},
      {{"up", "--name", Lab::unique_name(), "--nodes", "0"}, "--nodes must be 1..200"},
      {{"up", "--name", Lab::unique_name(), "--pods", "x"}, "--pods must be 0..250"},
      {{"up", "--bogus"}, "unknown option '--bogus'"},
      {{"frobnicate"}, "unknown command 'frobnicate'"},
  };
  for (const auto& c : cases) {
    auto result = run_lab(c.args);
    EXPECT_NE(result.exit_code, 0) << c.args[0];
    EXPECT_NE(result.err.find(c.message), std::string::npos) << result.err;
  }
  // A --policies file that is not a JSON list: named, and the half-made lab taken down.
  const std::string bad_name = Lab::unique_name();
  const std::string policies = "/tmp/zmesh-" + bad_name + "-policies.json";
  std::ofstream(policies) << R"({"name": "not-a-list"})";
  auto bad_policies = run_lab({"up", "--name", bad_name, "--nodes", "1", "--pods", "1", "--no-mesh", "--policies", policies});
  std::filesystem::remove(policies);
  EXPECT_NE(bad_policies.exit_code, 0);
  EXPECT_NE(bad_policies.err.find("--policies " + policies + ": a JSON list of AuthorizationPolicy, not a dict"),
            std::string::npos)
      << bad_policies.err;
  EXPECT_FALSE(netns_exists("zm-" + bad_name + "-node1")) << "the partial lab was removed";
  Lab existing({.nodes = 1, .pods = 1});
  auto twice = run_lab({"up", "--name", existing.name(), "--no-mesh"});
  EXPECT_NE(twice.exit_code, 0);
  EXPECT_NE(twice.err.find("already exists"), std::string::npos) << twice.err;
  // The refused second `up` must not have touched the first lab.
  EXPECT_TRUE(netns_exists(existing.pod("app1-n1").at("netns")));
}

TEST_F(LabTest, GcTakesDownLabsWhoseOwnerExited) {
  Process gone({"true"});
  const pid_t dead = gone.pid();
  gone.wait();
  const std::string name = Lab::unique_name();
  auto up = run_lab({"up", "--name", name, "--nodes", "1", "--pods", "1", "--owner", std::to_string(dead), "--no-mesh"});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  Lab alive({.nodes = 1, .pods = 0});  // owned by this live process: gc must keep it
  auto gc = run_lab({"gc"});
  EXPECT_EQ(gc.exit_code, 0) << gc.err;
  EXPECT_FALSE(netns_exists("zm-" + name + "-node1"));
  EXPECT_TRUE(netns_exists(alive.node("node1").at("netns")));
  run_lab({"down", "--name", name});
}

}  // namespace
}  // namespace zmesh::test
