// Mesh state end to end: authorization policies by namespace, port and address (and the part
// the kernel enforces), config reloads that take effect on open connections, a broken file that
// changes nothing, and runtime changes through zmeshctl and the control socket.
//
//   app1-n1 (sa app1), app2-n1 (sa app2) ── node1 zmeshd ══ HBONE ══ node2 zmeshd ── app1-n2, app2-n2
//   each zmeshd: --config <lab>/mesh.json (shared, watched), control socket <lab>/nodeK/control.sock
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include "echo.h"
#include "lab.h"
#include "eventually.h"
#include "metrics.h"

namespace zmesh::test {
namespace {

using nlohmann::json;

class MeshStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
  }
  void up(LabOptions options) {
    options.mesh = true;
    lab_ = std::make_unique<Lab>(std::move(options));
  }
  std::string ip(const std::string& pod) const { return lab_->pod(pod).at("ip"); }

  json ctl(const std::string& node, const std::vector<std::string>& args) const {
    auto result = lab_->zmeshctl(node, args);
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return result.exit_code == 0 ? json::parse(result.out) : json();
  }
  json status(const std::string& node) const { return ctl(node, {"status"}); }
  // Waits (bounded) until `node`'s status satisfies `done`.
  bool wait_status(const std::string& node, const std::function<bool(const json&)>& done) const {
    return eventually([&] { return done(status(node)); });
  }
  bool wait_generation(const std::string& node, uint64_t generation) const {
    return wait_status(node, [&](const json& s) { return s.at("generation").get<uint64_t>() >= generation; });
  }

  // Rewrites the shared mesh config as a deployment tool would: a new file renamed over it.
  void edit_config(const std::function<void(json&)>& edit) const {
    const std::string path = lab_->topology().at("meshConfig");
    std::ifstream in(path);
    json mesh = json::parse(in);
    edit(mesh);
    write_config(mesh.dump(2));
  }
  void write_config(const std::string& text) const {
    const std::string path = lab_->topology().at("meshConfig");
    std::ofstream(path + ".new") << text;
    std::filesystem::rename(path + ".new", path);
  }
  // A client that sends 40 chunks of 64 KiB, 100 ms apart (about 4 s), then reports.
  // Its stderr is merged into what read_line/wait_for see.
  std::unique_ptr<Process> slow_client(const std::string& from, const std::string& to, int port) const {
    return std::make_unique<Process>(
        lab_->exec(from, {bin_path("zm-echo"), "send", "--to", ip(to), "--port", std::to_string(port), "--bytes",
                          std::to_string(40 * 65536), "--pause-ms", "100"}),
        Process::Stderr::Merge);
  }
  json maps(const std::string& node) const { return ctl(node, {"maps"}); }
  static bool has_ip(const json& entries, const std::string& ip) {
    for (const auto& e : entries)
      if (e.at("ip") == ip) return true;
    return false;
  }
  // Writes `object` to a file under the lab's state directory and returns its path.
  std::string json_file(const std::string& name, const json& object) const {
    const std::string path = lab_->topology().at("stateDir").get<std::string>() + "/" + name + ".json";
    std::ofstream(path) << object.dump();
    return path;
  }

  std::unique_ptr<Lab> lab_;
};

TEST_F(MeshStateTest, NamespaceAndPortRulesDecideAcrossNodes) {
  up({.policies = R"([
    {"name": "default-ns-on-8080", "namespace": "default", "action": "ALLOW", "selector": {"workloads": ["app1-n2"]},
     "rules": [{"from": [{"source": {"namespaces": ["default"]}}], "to": [{"operation": {"ports": ["8080"]}}]}]},
    {"name": "other-namespaces", "namespace": "istio-system", "action": "DENY",
     "rules": [{"from": [{"source": {"namespaces": ["other-*"]}}]}]},
    {"name": "not-from-default", "namespace": "default", "action": "DENY", "selector": {"workloads": ["app2-n2"]},
     "rules": [{"from": [{"source": {"notNamespaces": ["default"]}}]}, {"to": [{"operation": {"notPorts": ["8080"]}}]}]}
  ])"});
  auto on_8080 = echo_server(*lab_, "app1-n2", 8080, {"--connections", "2"});
  auto on_8081 = echo_server(*lab_, "app1-n2", 8081);
  auto app2_8080 = echo_server(*lab_, "app2-n2", 8080);
  auto app2_8081 = echo_server(*lab_, "app2-n2", 8081);
  EXPECT_EQ(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 65536).exit_code, 0) << "namespace default on 8080";
  EXPECT_NE(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8081, 1000).exit_code, 0) << "8081 is not in the ALLOW rule";
  EXPECT_TRUE(lab_->log_shows("node2", "-> 10.244.2.2:8081: no ALLOW policy matched")) << lab_->log("node2");
  // Through the service VIP the same rules hold (service app1: 80 -> 8080 on app1-n1 or app1-n2).
  EXPECT_EQ(echo_send(*lab_, "app2-n1", "10.96.0.1", 80, 4096).exit_code, 0);
  // notNamespaces: mesh sources from "default" pass; notPorts: anything but 8080 is denied.
  EXPECT_EQ(echo_send(*lab_, "app1-n1", ip("app2-n2"), 8080, 4096).exit_code, 0);
  EXPECT_NE(echo_send(*lab_, "app1-n1", ip("app2-n2"), 8081, 1000).exit_code, 0);
  EXPECT_TRUE(lab_->log_shows("node2", "-> 10.244.2.3:8081: denied by DENY policy default/not-from-default"))
      << lab_->log("node2");
  // None of these rules can be decided without an identity: nothing went to the kernel.
  EXPECT_EQ(maps("node2").at("denyRules").size(), 0u);
  EXPECT_EQ(status("node2").at("kernelDenyEntries"), 0);
}

TEST_F(MeshStateTest, AddressRulesAreAlsoDroppedInTheKernelButNeverHbone) {
  // app1-n2 accepts plaintext. The rule denies node addresses (10.100.0.0/24) on port 8080.
  up({.permissive = {"app1-n2"},
      .policies = R"([{"name": "no-nodes-on-8080", "namespace": "default", "action": "DENY",
                       "selector": {"workloads": ["app1-n2"]},
                       "rules": [{"from": [{"source": {"ipBlocks": ["10.100.0.0/24"]}}],
                                  "to": [{"operation": {"ports": ["8080"]}}]}]}])"});
  const json rules = maps("node2").at("denyRules");
  ASSERT_EQ(rules.size(), 1u) << rules.dump() << " (one IPv4 block x one IPv4 address x one port)";
  EXPECT_EQ(rules[0].at("source"), "10.100.0.0/24");
  EXPECT_EQ(rules[0].at("destination"), ip("app1-n2"));
  EXPECT_EQ(rules[0].at("port"), 8080);
  EXPECT_EQ(rules[0].at("policy"), "default/no-nodes-on-8080");
  EXPECT_TRUE(maps("node1").at("denyRules").empty()) << "app1-n2 is not node1's";

  auto on_8080 = echo_server(*lab_, "app1-n2", 8080, {"--connections", "2"});
  auto on_8081 = echo_server(*lab_, "app1-n2", 8081);
  // Plaintext from node1 itself (not a pod: not captured): the SYN dies at node2's uplink.
  const auto drops_before = maps("node2").at("counters").at("tc_drop_deny").get<uint64_t>();
  const double plaintext_before =
      Metrics::scrape(*lab_, "node2").sum("zmesh_connections_accepted_total", {{"listener", "plaintext"}});
  auto dropped = echo_send(*lab_, "node1", ip("app1-n2"), 8080, 100, {"--connect-timeout-ms", "1500"});
  EXPECT_EQ(dropped.exit_code, 2) << "dropped SYNs: the connect times out " << dropped.err;
  EXPECT_GT(maps("node2").at("counters").at("tc_drop_deny").get<uint64_t>(), drops_before);
  EXPECT_EQ(Metrics::scrape(*lab_, "node2").sum("zmesh_connections_accepted_total", {{"listener", "plaintext"}}),
            plaintext_before)
      << "the proxy never saw it";
  // Another port from the same address: plaintext is fine for this PERMISSIVE pod.
  EXPECT_EQ(echo_send(*lab_, "node1", ip("app1-n2"), 8081, 4096).exit_code, 0);
  // HBONE from node1 (10.100.0.1, inside the block) carrying app1-n1 (10.244.1.2, outside it)
  // is not the kernel's to judge: the proxy sees the real source and allows it.
  EXPECT_EQ(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 65536).exit_code, 0);
}

TEST_F(MeshStateTest, AReloadClosesWhatThePolicyNowDeniesAndKeepsTheRest) {
  up({});
  auto on_app1 = echo_server(*lab_, "app1-n2", 8080, {"--connections", "2"});
  auto on_app2 = echo_server(*lab_, "app2-n2", 8080);
  auto doomed = slow_client("app1-n1", "app1-n2", 8080);
  auto kept = slow_client("app2-n1", "app2-n2", 8080);
  await_metric(*lab_, "node2", "istio_tcp_connections_opened_total", {{"reporter", "destination"}}, 2);  // both open
  edit_config([](json& mesh) {
    mesh["policies"] = json::parse(R"([{"name": "deny-app1", "namespace": "default", "action": "DENY",
      "selector": {"workloads": ["app1-n2"]},
      "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}]}]}])");
  });
  ASSERT_TRUE(wait_generation("node2", 2)) << lab_->log("node2");
  EXPECT_EQ(status("node2").at("lastChange").at("cause"), "config file changed");

  // Reset (not stalled: zm-echo would say "no progress"), while the other goes on.
  std::string seen;
  EXPECT_TRUE(doomed->wait_for("Connection reset by peer", &seen).has_value()) << "the denied connection was reset: " << seen;
  EXPECT_TRUE(lab_->log_shows("node2", "closed: denied by DENY policy default/deny-app1")) << lab_->log("node2");
  const auto line = kept->read_line(std::chrono::seconds(30));
  ASSERT_TRUE(line.has_value()) << "the other connection kept flowing";
  EXPECT_TRUE(json::parse(*line).at("match").get<bool>());
  EXPECT_EQ(kept->wait(std::chrono::seconds(10)), 0);
  // New connections follow the new policy too.
  EXPECT_NE(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 1000).exit_code, 0);
  // SIGHUP re-applies the same file: a new generation, nothing else changes.
  const auto generation = status("node1").at("generation").get<uint64_t>();
  ASSERT_EQ(kill(lab_->node("node1").at("zmeshd").at("pid").get<pid_t>(), SIGHUP), 0);
  EXPECT_TRUE(wait_generation("node1", generation + 1));
}

TEST_F(MeshStateTest, AReloadAddsChangesAndRemovesKernelEntriesLeavingNothingStale) {
  up({});
  auto ips_of = [](const json& entries) {
    std::set<std::string> out;
    for (const auto& e : entries) out.insert(e.at("ip"));
    return out;
  };
  const auto before = ips_of(maps("node1").at("destinations"));
  ASSERT_TRUE(before.contains(ip("app2-n2")));
  // app2-n2 leaves the mesh (and service app2), app1-n1 becomes PERMISSIVE, a service is added.
  edit_config([](json& mesh) {
    auto& workloads = mesh["workloads"];
    for (size_t i = 0; i < workloads.size(); ++i)
      if (workloads[i]["name"] == "app2-n2") workloads.erase(i--);
    for (auto& w : workloads)
      if (w["name"] == "app1-n1") w["mtlsMode"] = "PERMISSIVE";
    for (auto& s : mesh["services"])
      if (s["name"] == "app2") s["endpoints"] = json::array({"app2-n1"});
    mesh["services"].push_back(json::parse(R"({"name": "extra", "namespace": "default", "vips": ["10.96.0.9"],
                                              "ports": {"80": 8080}, "endpoints": ["app1-n1"]})"));
  });
  ASSERT_TRUE(wait_generation("node1", 2));
  ASSERT_TRUE(wait_generation("node2", 2));
  auto expected = before;
  expected.erase(ip("app2-n2"));
  expected.erase(lab_->pod("app2-n2").at("ip6").get<std::string>());
  expected.insert("10.96.0.9");
  EXPECT_EQ(ips_of(maps("node1").at("destinations")), expected) << "exactly the new config's addresses";
  const json node1_maps = maps("node1");  // named: a range-for over a temporary's member dangles
  for (const auto& w : node1_maps.at("workloads")) {
    if (w.at("ip") == ip("app1-n1")) {
      EXPECT_EQ(w.at("mtlsMode"), "PERMISSIVE");
    }
  }
  // node2 unenrolled app2-n2: only app1-n2's two addresses are left, and its links are gone.
  EXPECT_EQ(ips_of(maps("node2").at("workloads")),
            (std::set<std::string>{ip("app1-n2"), lab_->pod("app1-n2").at("ip6").get<std::string>()}));
  // The new service works; the pod that left the mesh is reached in plain TCP (not captured).
  auto server = echo_server(*lab_, "app1-n1", 8080);
  EXPECT_EQ(echo_send(*lab_, "app2-n1", "10.96.0.9", 80, 4096).exit_code, 0);
  auto outside = echo_server(*lab_, "app2-n2", 8080);
  EXPECT_EQ(echo_send(*lab_, "app1-n2", ip("app2-n2"), 8080, 4096).exit_code, 0);
}

TEST_F(MeshStateTest, ABrokenFileIsRejectedAndTheRunningStateStays) {
  up({});
  auto server = echo_server(*lab_, "app1-n2", 8080, {"--connections", "3"});
  // A string where a list belongs: the error names the path, the daemon keeps generation 1.
  edit_config([](json& mesh) {
    mesh["policies"] = json::parse(R"([{"name": "p", "namespace": "default",
      "rules": [{"from": [{"source": {"principals": "cluster.local/ns/default/sa/app1"}}]}]}])");
  });
  ASSERT_TRUE(wait_status("node1", [](const json& s) { return !s.at("lastFailure").is_null(); }));
  const json failed = status("node1");
  EXPECT_EQ(failed.at("generation"), 1);
  const std::string error = failed.at("lastFailure").at("error");
  EXPECT_NE(error.find("mesh.json: policies[0].rules[0].from[0].source.principals: expected a list of strings"),
            std::string::npos)
      << error;
  EXPECT_TRUE(lab_->log_shows("node1", "rejected, generation 1 stays in force")) << lab_->log("node1");
  EXPECT_EQ(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 65536).exit_code, 0) << "traffic as before";
  // `zmeshctl reload` says the same, with a failing exit code.
  auto reload = lab_->zmeshctl("node1", {"reload"});
  EXPECT_EQ(reload.exit_code, 1);
  EXPECT_NE(reload.err.find("expected a list of strings"), std::string::npos) << reload.err;
  // Well-formed but inconsistent (an endpoint that is no workload): rejected as a whole too.
  edit_config([](json& mesh) {
    mesh["policies"] = json::array();
    mesh["services"][0]["endpoints"].push_back("ghost");
  });
  ASSERT_TRUE(wait_status("node1", [](const json& s) {
    return s.at("lastFailure").at("error").get<std::string>().find("ghost") != std::string::npos;
  }));
  EXPECT_EQ(status("node1").at("generation"), 1);
  EXPECT_EQ(echo_send(*lab_, "app2-n1", "10.96.0.1", 80, 4096).exit_code, 0) << "the old services still work";
  // Fixed: the next write is applied.
  edit_config([](json& mesh) { mesh["services"][0]["endpoints"].erase(mesh["services"][0]["endpoints"].size() - 1); });
  EXPECT_TRUE(wait_generation("node1", 2));
}

TEST_F(MeshStateTest, EnrollUnenrollAndPoliciesAtRunTimeThroughZmeshctl) {
  up({.not_in_config = {"app2-n1"}});
  const auto& pod = lab_->pod("app2-n1");
  const std::string workload =
      json_file("app2-n1", {{"name", "app2-n1"}, {"namespace", "default"}, {"serviceAccount", "app2"},
                            {"node", "node1"}, {"workloadIps", {pod.at("ip"), pod.at("ip6")}},
                            {"cgroup", pod.at("cgroup")}, {"hostVeth", pod.at("hostVeth")}});
  EXPECT_FALSE(has_ip(maps("node1").at("workloads"), ip("app2-n1")));
  // node1 enrolls it (its pod); node2 learns it as a remote workload.
  for (const auto& node : {"node1", "node2"}) EXPECT_EQ(ctl(node, {"enroll", "-f", workload}).at("generation"), 2);
  EXPECT_TRUE(has_ip(maps("node1").at("workloads"), ip("app2-n1")));
  EXPECT_TRUE(has_ip(maps("node2").at("destinations"), ip("app2-n1")));
  EXPECT_FALSE(has_ip(maps("node2").at("workloads"), ip("app2-n1")));
  for (const auto& w : ctl("node1", {"workloads"}))
    EXPECT_EQ(w.at("source"), w.at("name") == "app2-n1" ? "runtime" : "file") << w.dump();
  auto server = echo_server(*lab_, "app2-n1", 8080, {"--connections", "3"});
  EXPECT_EQ(echo_send(*lab_, "app1-n2", ip("app2-n1"), 8080, 65536).exit_code, 0);
  const Labels delivered = connection("destination", "app1-n2", "app2-n1");
  EXPECT_EQ(await_metric(*lab_, "node1", "istio_tcp_connections_closed_total", delivered, 1)
                .sum("istio_tcp_connections_closed_total", delivered),
            1)
      << "delivered by node1's proxy over HBONE, as app2";
  bool has_app2_cert = false;
  for (const auto& cert : ctl("node1", {"certs"}))
    has_app2_cert = has_app2_cert || cert.at("identity") == "spiffe://cluster.local/ns/default/sa/app2";
  EXPECT_TRUE(has_app2_cert);
  // Kept in the runtime layer's file, for a restart.
  std::ifstream runtime(lab_->node("node1").at("zmeshd").at("stateDir").get<std::string>() + "/runtime.json");
  EXPECT_EQ(json::parse(runtime).at("workloads").at(0).at("name"), "app2-n1");
  // ... which a restarted zmeshd loads: the pod stays enrolled with no one calling again.
  lab_->restart("node1");
  EXPECT_EQ(status("node1").at("runtimeWorkloads"), 1);
  EXPECT_TRUE(has_ip(maps("node1").at("workloads"), ip("app2-n1")));
  EXPECT_EQ(echo_send(*lab_, "app1-n2", ip("app2-n1"), 8080, 4096).exit_code, 0);

  // A policy at run time, then deleted.
  const std::string policy = json_file(
      "deny-app1", json::parse(R"({"name": "deny-app1", "namespace": "default", "action": "DENY",
        "selector": {"workloads": ["app2-n1"]},
        "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}]}]})"));
  ctl("node1", {"policy", "apply", "-f", policy});
  EXPECT_EQ(ctl("node1", {"policies"}).at(0).at("source"), "runtime");
  EXPECT_NE(echo_send(*lab_, "app1-n2", ip("app2-n1"), 8080, 1000).exit_code, 0);
  ctl("node1", {"policy", "delete", "default/deny-app1"});
  EXPECT_EQ(echo_send(*lab_, "app1-n2", ip("app2-n1"), 8080, 4096).exit_code, 0);

  // What the file defines is changed in the file; unknown names are errors.
  auto from_file = lab_->zmeshctl("node1", {"unenroll", "default/app1-n1"});
  EXPECT_EQ(from_file.exit_code, 1);
  EXPECT_NE(from_file.err.find("comes from the config file"), std::string::npos) << from_file.err;
  auto unknown = lab_->zmeshctl("node1", {"policy", "delete", "default/nope"});
  EXPECT_NE(unknown.err.find("no policy default/nope was added at run time"), std::string::npos) << unknown.err;
  // Unenroll: the kernel forgets the pod.
  ctl("node1", {"unenroll", "default/app2-n1"});
  const json after = maps("node1");
  EXPECT_FALSE(has_ip(after.at("workloads"), ip("app2-n1")));
  EXPECT_FALSE(has_ip(after.at("destinations"), ip("app2-n1")));
  EXPECT_EQ(after.at("workloads").size(), 2u) << "app1-n1, IPv4 and IPv6";
}

TEST_F(MeshStateTest, TheControlSocketIsForRootAndSaysWhatIsWrong) {
  up({.nodes = 1, .pods = 1});
  const std::string socket = lab_->node("node1").at("zmeshd").at("controlSocket");
  struct stat st{};
  ASSERT_EQ(stat(socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto nobody = run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin_path("zmeshctl"), "--socket",
                     socket, "status"});
  EXPECT_EQ(nobody.exit_code, 1);
  EXPECT_NE(nobody.err.find("permission denied"), std::string::npos) << nobody.err;
  // A refused request is read before the answer: a large one (200 KiB) gets the reason too,
  // not a reset from closing a socket with unread bytes.
  json big = {{"name", "big"}, {"namespace", "default"}, {"rules", json::array()}};
  for (int i = 0; i < 2000; ++i) big["rules"].push_back({{"to", {{{"operation", {{"ports", {"80"}}}}}}}});
  const std::string big_file = json_file("big", big);
  chmod(big_file.c_str(), 0644);
  chmod(std::filesystem::path(big_file).parent_path().c_str(), 0755);
  auto big_nobody = run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin_path("zmeshctl"),
                         "--socket", socket, "policy", "apply", "-f", big_file});
  EXPECT_EQ(big_nobody.exit_code, 1);
  EXPECT_NE(big_nobody.err.find("permission denied"), std::string::npos) << big_nobody.err;
  // Bad input: each error says what and where; nothing changes.
  auto bad_ip = lab_->zmeshctl(
      "node1", {"enroll", "-f", json_file("bad", {{"name", "x"}, {"namespace", "default"}, {"workloadIps", {"10.1"}}})});
  EXPECT_NE(bad_ip.err.find("workload.workloadIps[0]: '10.1' is not an IP address"), std::string::npos) << bad_ip.err;
  const std::string not_json = lab_->topology().at("stateDir").get<std::string>() + "/not.json";
  std::ofstream(not_json) << "{\"name\": ";
  auto broken = lab_->zmeshctl("node1", {"policy", "apply", "-f", not_json});
  EXPECT_NE(broken.err.find("not valid JSON"), std::string::npos) << broken.err;
  auto clash = lab_->zmeshctl("node1", {"enroll", "-f", json_file("clash", {{"name", "x"}, {"namespace", "default"},
                                                                            {"workloadIps", {ip("app1-n1")}},
                                                                            {"node", "node9"}})});
  EXPECT_NE(clash.err.find("already belongs to another workload"), std::string::npos) << clash.err;
  EXPECT_EQ(status("node1").at("generation"), 1) << "nothing was applied";
  // Options of zmeshctl itself go before or after the command, as kubectl users type them.
  for (const std::vector<std::string>& argv :
       {std::vector<std::string>{bin_path("zmeshctl"), "workloads", "-o", "json", "--socket", socket},
        std::vector<std::string>{bin_path("zmeshctl"), "--socket", socket, "maps", "--output", "json"}}) {
    auto listed = run(argv);
    EXPECT_EQ(listed.exit_code, 0) << listed.err;
    ASSERT_TRUE(json::accept(listed.out)) << listed.out;
    EXPECT_FALSE(json::parse(listed.out).empty()) << listed.out;
  }
  // A daemon that is not there.
  auto gone = run({bin_path("zmeshctl"), "--socket", "/run/zmesh-nonexistent/control.sock", "status"});
  EXPECT_NE(gone.err.find("is zmeshd running with this --state-dir?"), std::string::npos) << gone.err;
}

}  // namespace
}  // namespace zmesh::test

namespace zmesh::test {
namespace {

// Bytes from outside that are not UTF-8, at every door that takes text: the config file, the
// control socket, the CNI plugin's stdin. Each is refused with a reason, and nothing stays
// broken: before, one 0xff byte in the file made every later control reply and /config_dump
// fail until restart, and zmesh-cni aborted.
TEST_F(MeshStateTest, BytesThatAreNotUtf8AreRefusedAndBreakNothing) {
  up({.nodes = 1, .pods = 1});
  write_config("{\"workloads\": [{\"name\": \"caf\xff\", \"namespace\": \"default\", \"node\": \"node1\"}]}");
  ASSERT_TRUE(wait_status("node1", [](const json& s) { return !s.at("lastFailure").is_null(); }));
  const json failed = status("node1");  // the reply serialises: ctl() asserts exit 0
  EXPECT_EQ(failed.at("generation"), 1);
  EXPECT_NE(failed.at("lastFailure").at("error").get<std::string>().find("not valid JSON"), std::string::npos);
  auto dump = run(lab_->exec("node1", {"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                       "http://127.0.0.1:15000/config_dump"}));
  EXPECT_EQ(dump.out, "200");

  // The control socket, spoken raw: a request that is not UTF-8 gets a reason, not silence.
  const std::string socket = lab_->node("node1").at("zmeshd").at("controlSocket");
  const std::string raw =
      "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
      "s.sendall(bytes.fromhex(sys.argv[2]) + b'\\n'); print(s.makefile('rb').readline().decode('utf-8'), end='')";
  auto hex = [](const std::string& text) {
    std::string out;
    for (unsigned char c : text) out += "0123456789abcdef"[c >> 4], out += "0123456789abcdef"[c & 15];
    return out;
  };
  for (const std::string& request : {std::string("{\"command\": \"status\xff\"}"),
                                     std::string("{\"command\": \"enroll\", \"workload\": {\"name\": \"\xc3\x28\"}}")}) {
    auto reply = run({"python3", "-c", raw, socket, hex(request)});
    ASSERT_EQ(reply.exit_code, 0) << reply.err;
    const json answer = json::parse(reply.out);
    EXPECT_FALSE(answer.at("ok").get<bool>());
    EXPECT_NE(answer.at("error").get<std::string>().find("not valid JSON"), std::string::npos) << reply.out;
  }

  // zmesh-cni with such stdin: a CNI error on stdout (code 6, decode failed), no abort.
  auto cni = run({"sh", "-c", "printf '{\"cniVersion\": \"1.0.0\", \"name\": \"k\\377\"}' | CNI_COMMAND=ADD \"$0\"",
                  bin_path("zmesh-cni")});
  EXPECT_EQ(cni.exit_code, 1) << cni.out << cni.err;
  const json error = json::parse(cni.out);
  EXPECT_EQ(error.at("code"), 6);

  // Fixed: applied at once; a text already refused is not refused again for each neighbour
  // that changes beside it (logs in the same directory used to re-read it 10 times a second).
  const auto rejected = status("node1").at("rejectedFiles").get<uint64_t>();
  const auto checks = status("node1").at("fileChecks").get<uint64_t>();
  const std::string dir = std::filesystem::path(lab_->topology().at("meshConfig").get<std::string>()).parent_path();
  for (int i = 0; i < 5; ++i) {
    std::ofstream(dir + "/neighbour.log", std::ios::app) << i << '\n';
    ASSERT_TRUE(wait_status("node1", [&](const json& s) { return s.at("fileChecks").get<uint64_t>() > checks + i; }));
  }
  EXPECT_EQ(status("node1").at("rejectedFiles"), rejected) << "the watch ran 5 times; the refused text was not refused again";
  write_config("{\"workloads\": []}");
  EXPECT_TRUE(wait_generation("node1", 2));
  EXPECT_EQ(status("node1").at("rejectedFiles"), rejected);
}

}  // namespace
}  // namespace zmesh::test
