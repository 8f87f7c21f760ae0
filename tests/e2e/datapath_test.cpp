// The kernel datapath in the lab, end to end: zmeshd enrolls node1's pods from the lab's mesh
// config; zm-standin listens where the proxy will (15001, transparent 15008/15006) and echoes;
// pods send real bytes with zm-echo, which checks every byte that comes back.
//
//   app1-n1, app2-n1 ── node1 [zmeshd --proxy off, zm-standin] ── fabric ── node2 ── app1-n2, app2-n2
//   (enrolled on node1)                                              (no zmeshd: plain pods)
#include <bpf/bpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "echo.h"
#include "lab.h"
#include "netns.h"
#include "zmesh/datapath.h"

namespace zmesh::test {
namespace {

namespace fs = std::filesystem;
using boost::asio::ip::make_address;

class DatapathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the datapath needs root";
    lab_ = std::make_unique<Lab>();
  }

  const nlohmann::json& node1() const { return lab_->node("node1"); }
  std::string pin_root() const { return node1().at("bpfRoot"); }
  std::string pod_ip(const std::string& pod, const char* family = "ip") const { return lab_->pod(pod).at(family); }

  // The lab's mesh config, changed by `edit`, written next to it.
  std::string config(const std::function<void(nlohmann::json&)>& edit = {}) {
    std::ifstream in(lab_->topology().at("meshConfig").get<std::string>());
    auto mesh = nlohmann::json::parse(in);
    if (edit) edit(mesh);
    const std::string path = lab_->topology().at("stateDir").get<std::string>() + "/test-" +
                             std::to_string(configs_++) + ".json";
    std::ofstream(path) << mesh.dump();
    return path;
  }

  std::vector<std::string> zmeshd_argv(const std::string& config_path, const std::string& sockmap = "off",
                                       const std::vector<std::string>& extra = {},
                                       const std::vector<std::string>& without = {}) {
    std::vector<std::string> args{"--config", config_path, "--sockmap", sockmap, "--proxy", "off"};
    args.insert(args.end(), extra.begin(), extra.end());
    return lab_->zmeshd_command("node1", args, "", lab_->topology().at("stateDir").get<std::string>() + "/zmeshd-node1",
                                without);
  }

  void start_zmeshd(const std::string& config_path, const std::string& sockmap = "off") {
    zmeshd_ = std::make_unique<Process>(zmeshd_argv(config_path, sockmap), Process::Stderr::Merge);
    ASSERT_TRUE(lab_->wait_ready("node1")) << "zmeshd did not come up";
  }

  void stop_zmeshd() {
    zmeshd_->kill(SIGTERM);
    EXPECT_EQ(zmeshd_->wait(std::chrono::seconds(10)), 0) << "zmeshd must stop cleanly on SIGTERM";
  }

  // The stand-in plays the proxy: it runs where zmeshd does (the proxy's cgroup, whose
  // sockets sockops tracks for the short-cut).
  void start_standin() {
    standin_ = std::make_unique<Process>(
        lab_->exec("node1", {bin_path("zm-standin"), "--bpf-root", pin_root()}, "zmeshd"));
    ASSERT_TRUE(standin_->wait_for("listening")) << "zm-standin did not start";
  }

  nlohmann::json standin_saw() {
    auto line = standin_->read_line();
    EXPECT_TRUE(line.has_value()) << "the stand-in accepted nothing";
    return line ? nlohmann::json::parse(*line) : nlohmann::json{};
  }

  Result send(const std::string& from, const std::string& to, int port, int bytes = 1 << 20, int connect_ms = 10000) {
    return echo_send(*lab_, from, to, port, bytes, {"--connect-timeout-ms", std::to_string(connect_ms)});
  }

  std::unique_ptr<Process> server(const std::string& where, int port) { return echo_server(*lab_, where, port); }

  zm_counters counters() const { return PinnedMaps(pin_root()).counters(); }

  std::unique_ptr<Lab> lab_;
  std::unique_ptr<Process> zmeshd_, standin_;
  int configs_ = 0;
};

TEST_F(DatapathTest, CapturesMeshConnectsAndRecoversTheOriginalDestination) {
  start_standin();
  start_zmeshd(config());
  for (const char* family : {"ip", "ip6"}) {
    SCOPED_TRACE(family);
    auto sent = send("app1-n1", pod_ip("app1-n2", family), 8080);
    ASSERT_EQ(sent.exit_code, 0) << sent.err;
    EXPECT_TRUE(nlohmann::json::parse(sent.out).at("match").get<bool>());
    auto seen = standin_saw();
    EXPECT_EQ(seen.at("listener"), "outbound");
    const bool v6 = std::string(family) == "ip6";
    const std::string orig = v6 ? "[" + pod_ip("app1-n2", family) + "]:8080" : pod_ip("app1-n2", family) + ":8080";
    EXPECT_EQ(seen.at("orig"), orig);
    const std::string gateway = node1().at(v6 ? "gateway6" : "gateway");
    EXPECT_EQ(seen.at("local"), v6 ? "[" + gateway + "]:15001" : gateway + ":15001");
  }
  // A dual-stack socket connecting to an IPv4-mapped address goes through connect6 only.
  auto sent = send("app1-n1", "::ffff:" + pod_ip("app1-n2"), 8081);
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  EXPECT_EQ(standin_saw().at("orig"), pod_ip("app1-n2") + ":8081");
  const auto c = counters();
  EXPECT_EQ(c.connect_redirected, 3u);
  EXPECT_EQ(c.sockops_orig_moved, 3u);
}

TEST_F(DatapathTest, StockBpftoolShowsTheMapsWithFieldNames) {
  start_zmeshd(config());
  struct Case {
    const char* map;
    std::vector<std::string> fields;
  } cases[] = {
      {"zm_workloads", {"\"family\": 4", "\"cgroup_id\"", "\"ifindex\""}},
      {"zm_dests", {"\"kind\": 1"}},
      {"zm_counters", {"\"connect_redirected\"", "\"tc_to_hbone\"", "\"shortcut_bytes\""}},
  };
  for (const auto& c : cases) {
    auto dump = run({"bpftool", "map", "dump", "pinned", pin_root() + "/" + c.map});
    ASSERT_EQ(dump.exit_code, 0) << dump.err;
    for (const auto& field : c.fields) EXPECT_NE(dump.out.find(field), std::string::npos) << c.map << ": " << field;
  }
  // zmeshctl decodes the same maps.
  auto shown = run({bin_path("zmeshctl"), "-o", "json", "maps", "--bpf-root", pin_root()});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  auto maps = nlohmann::json::parse(shown.out);
  EXPECT_EQ(maps.at("workloads").size(), 4u) << "two pods on node1, each IPv4 and IPv6";
  EXPECT_EQ(maps.at("destinations").size(), 12u) << "every pod IP and service VIP of the lab";
  EXPECT_TRUE(maps.at("counters").contains("tc_drop_deny"));
  auto missing = run({bin_path("zmeshctl"), "maps", "--bpf-root", "/sys/fs/bpf/zmesh-nonexistent"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("is zmeshd running with this pin root?"), std::string::npos) << missing.err;
}

TEST_F(DatapathTest, ClsactFallbackSteersAndCleansUpLikeTcx) {
  start_standin();
  zmeshd_ = std::make_unique<Process>(zmeshd_argv(config(), "off", {"--tc-mode", "clsact"}), Process::Stderr::Merge);
  ASSERT_TRUE(lab_->wait_ready("node1"));
  auto filters = run(lab_->exec("node1", {"tc", "filter", "show", "dev", "eth0", "ingress"}));
  EXPECT_NE(filters.out.find("zm_tc_ingress"), std::string::npos) << filters.out;
  auto sent = send("node2", pod_ip("app2-n1"), 15008);
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  EXPECT_EQ(standin_saw().at("local"), pod_ip("app2-n1") + ":15008");
  stop_zmeshd();
  ASSERT_EQ(run(lab_->exec("node1", {bin_path("zmeshd"), "--cleanup", "--bpf-root", pin_root()})).exit_code, 0);
  filters = run(lab_->exec("node1", {"tc", "filter", "show", "dev", "eth0", "ingress"}));
  EXPECT_EQ(filters.out.find("zm_tc_ingress"), std::string::npos) << filters.out;
}

TEST_F(DatapathTest, NonMeshDestinationsAndTheNodesOwnConnectsPassUntouched) {
  start_standin();
  start_zmeshd(config());
  // The node2 underlay address is not in the mesh: reached directly, source address intact.
  auto on_node2 = server("node2", 7100);
  auto sent = send("app1-n1", lab_->node("node2").at("ip"), 7100);
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  auto seen = nlohmann::json::parse(*on_node2->read_line());
  EXPECT_EQ(seen.at("peer").get<std::string>().rfind(pod_ip("app1-n1") + ":", 0), 0u) << seen.dump();
  // A process of the node itself reaching a pod of another node is never captured (that node
  // decides its plaintext).
  auto in_pod = server("app1-n2", 7101);
  sent = send("node1", pod_ip("app1-n2"), 7101);
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  EXPECT_TRUE(in_pod->read_line().has_value());
  const auto c = counters();
  EXPECT_EQ(c.connect_redirected, 0u);
  EXPECT_GE(c.connect_passed, 1u);
}

TEST_F(DatapathTest, ShortCutCarriesTheBytesAndBothSwitchPositionsGiveTheSameBytes) {
  start_standin();
  constexpr int kBytes = 4 << 20;
  for (const std::string position : {"on", "off"}) {
    SCOPED_TRACE("--sockmap " + position);
    start_zmeshd(config(), position);
    const auto before = counters();
    auto sent = send("app1-n1", pod_ip("app1-n2"), 8080, kBytes);
    ASSERT_EQ(sent.exit_code, 0) << sent.err;
    auto report = nlohmann::json::parse(sent.out);
    EXPECT_TRUE(report.at("match").get<bool>());
    EXPECT_EQ(report.at("received"), kBytes);
    standin_saw();
    const auto after = counters();
    if (position == "on") {
      // Both directions of the pod<->proxy hop went through the sockhash, not TCP/IP.
      EXPECT_GE(after.shortcut_bytes - before.shortcut_bytes, 2ull * kBytes);
      EXPECT_EQ(after.sockhash_added - before.sockhash_added, 2u);
    } else {
      EXPECT_EQ(after.shortcut_bytes, before.shortcut_bytes);
      EXPECT_EQ(after.sockhash_added, before.sockhash_added);
    }
    stop_zmeshd();
  }
}

TEST_F(DatapathTest, InboundIsSteeredToTheTransparentListenersOrDroppedForStrictPods) {
  start_standin();
  start_zmeshd(config([](nlohmann::json& mesh) {
    for (auto& w : mesh["workloads"])
      if (w["name"] == "app1-n1") w["mtlsMode"] = "PERMISSIVE";  // app2-n1 keeps the default, STRICT
  }));
  // From node2 (another node; not a pod, so nothing captures it there).
  auto sent = send("node2", pod_ip("app1-n1"), 15008);
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  auto seen = standin_saw();
  EXPECT_EQ(seen.at("listener"), "hbone");
  EXPECT_EQ(seen.at("local"), pod_ip("app1-n1") + ":15008") << "the original destination is the local address";
  EXPECT_EQ(seen.at("peer").get<std::string>().rfind("10.100.0.2:", 0), 0u) << "the client's real address";

  sent = send("node2", pod_ip("app1-n1", "ip6"), 9090);
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  seen = standin_saw();
  EXPECT_EQ(seen.at("listener"), "plaintext");
  EXPECT_EQ(seen.at("local"), "[" + pod_ip("app1-n1", "ip6") + "]:9090");

  auto strict = send("node2", pod_ip("app2-n1"), 9090, 1000, 1500);
  EXPECT_EQ(strict.exit_code, 2) << "plaintext to a STRICT pod must be dropped: " << strict.out << strict.err;
  EXPECT_GE(counters().tc_drop_mtls, 1u);
}

TEST_F(DatapathTest, StoppedDaemonKeepsRedirectionAndFailsClosedThenRestartAdoptsWithoutDuplicates) {
  start_standin();
  start_zmeshd(config());
  const std::string pod_cgroup = lab_->pod("app1-n1").at("cgroup");
  const auto links_before = PinnedMaps(pin_root()).workload_ips().size();
  stop_zmeshd();

  // zmeshd down, stand-in still up: pods stay captured (nothing bypasses the mesh).
  auto sent = send("app1-n1", pod_ip("app1-n2"), 8080);
  EXPECT_EQ(sent.exit_code, 0) << sent.err;
  EXPECT_EQ(standin_saw().at("orig"), pod_ip("app1-n2") + ":8080");
  // Stand-in down as well: the connect is refused, never delivered to the real server in plaintext.
  standin_.reset();
  auto real = server("app1-n2", 8080);
  sent = send("app1-n1", pod_ip("app1-n2"), 8080, 1000, 2000);
  EXPECT_NE(sent.exit_code, 0) << "a captured connect went around the proxy: " << sent.out;
  real.reset();

  start_standin();
  start_zmeshd(config());
  EXPECT_EQ(attached_programs(pod_cgroup, BPF_CGROUP_INET4_CONNECT), 1u);
  EXPECT_EQ(attached_programs(pod_cgroup, BPF_CGROUP_INET6_CONNECT), 1u);
  EXPECT_EQ(attached_programs(pod_cgroup, BPF_CGROUP_SOCK_OPS), 1u);
  EXPECT_EQ(PinnedMaps(pin_root()).workload_ips().size(), links_before);
  auto tcx = NetnsThread(node1().at("netns")).run([] {
    uint32_t ids[16], count = 16, flags = 0;
    bpf_prog_query(static_cast<int>(if_nametoindex("eth0")), static_cast<bpf_attach_type>(46), 0, &flags, ids, &count);
    return count;
  });
  EXPECT_EQ(tcx, 1u) << "one tc ingress program on node1's uplink after a restart";
  sent = send("app1-n1", pod_ip("app1-n2"), 8080);
  EXPECT_EQ(sent.exit_code, 0) << sent.err;
  EXPECT_EQ(standin_saw().at("orig"), pod_ip("app1-n2") + ":8080");
}

TEST_F(DatapathTest, RestartWithoutAWorkloadUnenrollsIt) {
  start_standin();
  start_zmeshd(config());
  stop_zmeshd();
  start_zmeshd(config([](nlohmann::json& mesh) {
    auto& w = mesh["workloads"];
    w.erase(std::remove_if(w.begin(), w.end(), [](const auto& x) { return x["name"] == "app1-n1"; }), w.end());
    for (auto& service : mesh["services"]) {
      auto& e = service["endpoints"];
      e.erase(std::remove(e.begin(), e.end(), "app1-n1"), e.end());
    }
  }));
  EXPECT_EQ(attached_programs(lab_->pod("app1-n1").at("cgroup").get<std::string>(), BPF_CGROUP_INET4_CONNECT), 0u);
  auto direct = server("app1-n2", 8080);
  auto sent = send("app1-n1", pod_ip("app1-n2"), 8080);
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  auto seen = nlohmann::json::parse(*direct->read_line());
  EXPECT_EQ(seen.at("peer").get<std::string>().rfind(pod_ip("app1-n1") + ":", 0), 0u) << seen.dump();
}

TEST_F(DatapathTest, AFailedRestartKeepsThePodsProtected) {
  start_standin();
  start_zmeshd(config());
  stop_zmeshd();
  // The restart fails on app1-n1 (its veth is gone from the config's view): the daemon exits,
  // but what the previous one pinned must keep capturing and guarding app1-n1.
  auto broken = config([](nlohmann::json& mesh) {
    for (auto& w : mesh["workloads"])
      if (w["name"] == "app1-n1") w["hostVeth"] = "nosuchveth0";
  });
  auto failed = run(zmeshd_argv(broken));
  EXPECT_EQ(failed.exit_code, 1);
  EXPECT_NE(failed.err.find("nosuchveth0"), std::string::npos) << failed.err;
  const std::string cgroup = lab_->pod("app1-n1").at("cgroup");
  EXPECT_EQ(attached_programs(cgroup, BPF_CGROUP_INET4_CONNECT), 1u);
  const auto ips = PinnedMaps(pin_root()).workload_ips();
  EXPECT_NE(std::find(ips.begin(), ips.end(), make_address(pod_ip("app1-n1"))), ips.end());
  auto sent = send("app1-n1", pod_ip("app1-n2"), 8080);
  EXPECT_EQ(sent.exit_code, 0) << sent.err;
  EXPECT_EQ(standin_saw().at("orig"), pod_ip("app1-n2") + ":8080") << "still captured";
}

TEST_F(DatapathTest, CleanupRemovesEverythingItMade) {
  start_standin();
  start_zmeshd(config());
  stop_zmeshd();
  auto cleanup = run(lab_->exec("node1", {bin_path("zmeshd"), "--cleanup", "--bpf-root", pin_root()}));
  ASSERT_EQ(cleanup.exit_code, 0) << cleanup.err;
  EXPECT_FALSE(fs::exists(pin_root()));
  for (const char* pod : {"app1-n1", "app2-n1"}) {
    const std::string cgroup = lab_->pod(pod).at("cgroup");
    EXPECT_EQ(attached_programs(cgroup, BPF_CGROUP_INET4_CONNECT) + attached_programs(cgroup, BPF_CGROUP_INET6_CONNECT) +
                  attached_programs(cgroup, BPF_CGROUP_SOCK_OPS),
              0u)
        << pod;
  }
  auto rules = run(lab_->exec("node1", {"ip", "rule"}));
  EXPECT_EQ(rules.out.find("0x5a0"), std::string::npos) << rules.out;
  auto tables = run(lab_->exec("node1", {"ip", "route", "show", "table", "1440"}));
  EXPECT_EQ(tables.out, "");
  // And the pods talk directly again.
  auto direct = server("app1-n2", 8080);
  auto sent = send("app1-n1", pod_ip("app1-n2"), 8080);
  EXPECT_EQ(sent.exit_code, 0) << sent.err;
  // A second cleanup finds nothing and is fine.
  EXPECT_EQ(run(lab_->exec("node1", {bin_path("zmeshd"), "--cleanup", "--bpf-root", pin_root()})).exit_code, 0);
}

// The C++ API itself, driven from a thread inside node1's netns: enroll, deny, unenroll.
TEST_F(DatapathTest, ApiEnrollDenyAndUnenrollInTheLab) {
  start_standin();
  NetnsThread in_node1(node1().at("netns"));
  const auto& pod = lab_->pod("app1-n1");
  const WorkloadAttachment app1{"app1-n1", pod.at("cgroup").get<std::string>(), pod.at("hostVeth"),
                                {make_address(pod_ip("app1-n1")), make_address(pod_ip("app1-n1", "ip6"))}, false};
  auto datapath = in_node1.run([&] {
    DatapathOptions options;
    options.pin_root = pin_root();
    options.outbound_ip4 = boost::asio::ip::make_address_v4(node1().at("gateway").get<std::string>());
    options.outbound_ip6 = boost::asio::ip::make_address_v6(node1().at("gateway6").get<std::string>());
    options.proxy_cgroup = node1().at("cgroup").get<std::string>();
    auto dp = BpfDatapath::start(options);
    dp->enroll(app1);
    dp->add_destination(make_address(pod_ip("app1-n2")), DestinationKind::Workload);
    dp->set_deny_rules({{9, {make_address("10.244.2.0"), 24}, make_address(pod_ip("app1-n1")), 7300}});
    return dp;
  });

  auto sent = send("app1-n1", pod_ip("app1-n2"), 8080);
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  EXPECT_EQ(standin_saw().at("orig"), pod_ip("app1-n2") + ":8080");

  // Deny: pods of node2's CIDR to app1-n1:7300 are dropped at node1's uplink; 7301 is not.
  auto denied = send("app2-n2", pod_ip("app1-n1"), 7300, 1000, 1500);
  EXPECT_EQ(denied.exit_code, 2) << denied.out << denied.err;
  EXPECT_GE(datapath->counters().tc_drop_deny, 1u);
  auto allowed = send("app2-n2", pod_ip("app1-n1"), 7301);
  EXPECT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_EQ(standin_saw().at("listener"), "plaintext");

  // Unenroll: the direct path is back.
  in_node1.run([&] { datapath->unenroll(app1); });
  auto direct = server("app1-n2", 8080);
  sent = send("app1-n1", pod_ip("app1-n2"), 8080);
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  EXPECT_EQ(nlohmann::json::parse(*direct->read_line()).at("peer").get<std::string>().rfind(pod_ip("app1-n1"), 0), 0u);
  in_node1.run([&] { datapath.reset(); });
}

TEST_F(DatapathTest, StartupErrorsSayWhatIsWrong) {
  // A cgroup that does not exist, in the config: zmeshd refuses to start and names it.
  auto bad = config([](nlohmann::json& mesh) { mesh["workloads"][0]["cgroup"] = "/sys/fs/cgroup/nonexistent-zmesh"; });
  auto result = run(zmeshd_argv(bad));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("/sys/fs/cgroup/nonexistent-zmesh"), std::string::npos) << result.err;
  // A config with an unknown field: named with its path.
  auto typo = config([](nlohmann::json& mesh) { mesh["workloads"][1]["serviceAcount"] = "x"; });
  result = run(zmeshd_argv(typo));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("workloads[1].serviceAcount: unknown field"), std::string::npos) << result.err;
  // Both were refused before anything on the node changed: nothing pinned, no routing rule.
  EXPECT_FALSE(fs::exists(pin_root())) << "a refused start-up pinned programs";
  const auto rules = run(lab_->exec("node1", {"ip", "rule"}));
  EXPECT_EQ(rules.out.find("fwmark 0x5a0"), std::string::npos) << rules.out;
  // IPv6 workloads without an IPv6 proxy address: refused, not redirected to [::].
  result = run(zmeshd_argv(config(), "off", {}, {"--outbound-ip6"}));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("give --outbound-ip6"), std::string::npos) << result.err;
  // A second daemon on a pin root another one holds: refused before it touches anything.
  start_zmeshd(config());
  result = run(zmeshd_argv(config()));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("another zmeshd is running with this --bpf-root?"), std::string::npos) << result.err;
  EXPECT_EQ(attached_programs(lab_->pod("app1-n1").at("cgroup").get<std::string>(), BPF_CGROUP_INET4_CONNECT), 1u);
  stop_zmeshd();
  // A pin root outside bpffs.
  result = run(zmeshd_argv(config(), "off", {"--bpf-root", "/tmp/zmesh-not-bpffs"}));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("is not on bpffs"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace zmesh::test
