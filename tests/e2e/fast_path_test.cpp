// The same-node fast path end to end (docs/datapath.md "The fast path"): after the proxy has
// allowed a pod's first connection to a pod of its node, the next ones go pod to pod with no
// proxy hop; the bytes still reach istio_tcp_* for both reporters; any change voids the
// cache; a DENY resets open fast-path connections and refuses new ones; a pod of another
// identity never rides someone else's verdict.
//
//   app1-n1 (sa app1), app2-n1 (sa app2), app3-n1 (sa app3) ── node1 zmeshd (one node)
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "capture.h"
#include "echo.h"
#include "eventually.h"
#include "lab.h"
#include "metrics.h"

namespace zmesh::test {
namespace {

using nlohmann::json;

class FastPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
  }
  void up(std::vector<std::string> zmeshd_args = {}, std::vector<std::string> not_in_config = {}) {
    LabOptions options;
    options.not_in_config = std::move(not_in_config);
    options.nodes = 1;
    options.pods = 3;
    options.mesh = true;
    options.zmeshd_args = std::move(zmeshd_args);
    lab_ = std::make_unique<Lab>(std::move(options));
    server_ = echo_server(*lab_, "app1-n1", 8080, {"--connections", "100"});
  }
  std::string ip(const std::string& pod, const std::string& family = "ip") const { return lab_->pod(pod).at(family); }
  uint64_t kernel(const std::string& event) const {
    return static_cast<uint64_t>(Metrics::scrape(*lab_, "node1").sum("zmesh_datapath_events_total", {{"event", event}}));
  }
  // One connection from `from` to app1-n1:8080 carrying `bytes` each way; whether all came back.
  bool send(const std::string& from, int bytes = 1000, const std::string& family = "ip") const {
    return echo_send(*lab_, from, ip("app1-n1", family), 8080, bytes).exit_code == 0;
  }
  // From app2-n1 to app1-n1:8080, 40 chunks of 64 KiB 100 ms apart (about 4 s), then its report.
  std::unique_ptr<Process> slow_client() const {
    return std::make_unique<Process>(
        lab_->exec("app2-n1", {bin_path("zm-echo"), "send", "--to", ip("app1-n1"), "--port", "8080", "--bytes",
                               std::to_string(40 * 65536), "--pause-ms", "100"}),
        Process::Stderr::Merge);
  }
  void apply_policy(const json& policy) const {
    const std::string path = lab_->topology().at("stateDir").get<std::string>() + "/policy.json";
    std::ofstream(path) << policy.dump();
    const auto result = lab_->zmeshctl("node1", {"policy", "apply", "-f", path});
    ASSERT_EQ(result.exit_code, 0) << result.err;
  }
  static json deny(const std::string& account) {
    return {{"name", "deny-" + account},
            {"namespace", "default"},
            {"action", "DENY"},
            {"selector", {{"workloads", {"app1-n1"}}}},
            {"rules", {{{"from", {{{"source", {{"principals", {"cluster.local/ns/default/sa/" + account}}}}}}}}}}};
  }

  std::unique_ptr<Lab> lab_;
  std::unique_ptr<Process> server_;
};

TEST_F(FastPathTest, AfterTheFirstConnectionPodsTalkDirectlyAndTheBytesAreStillCounted) {
  up();
  Capture capture(lab_->node("node1").at("netns"), lab_->pod("app2-n1").at("hostVeth"),
                  lab_->topology().at("stateDir").get<std::string>() + "/vpod.pcap");
  // The first connection is the proxy's to decide (app1-n1 is STRICT).
  ASSERT_TRUE(send("app2-n1"));
  EXPECT_EQ(kernel("connect_redirected"), 1u);
  EXPECT_EQ(kernel("connect_fast"), 0u);
  const auto accepted = stats(*lab_, "node1").at("proxy").at("outboundAccepted").get<uint64_t>();

  // The next ones, over both families once the proxy has allowed each: no proxy hop.
  constexpr int kBytes = 300000;
  ASSERT_TRUE(send("app2-n1", kBytes));
  ASSERT_TRUE(send("app2-n1", 1000, "ip6"));  // the proxy's (another destination address)
  ASSERT_TRUE(send("app2-n1", kBytes, "ip6"));
  EXPECT_EQ(kernel("connect_fast"), 2u);
  EXPECT_EQ(kernel("tc_fast_path"), 2u) << "tc ingress let the SYNs into the STRICT pod";
  EXPECT_EQ(kernel("tc_door_fast"), 2u) << "and so did the pod's door";
  EXPECT_EQ(kernel("connect_redirected"), 2u);
  EXPECT_EQ(stats(*lab_, "node1").at("proxy").at("outboundAccepted").get<uint64_t>(), accepted + 1);

  // On the client's veth: SYNs to the proxy's port for the proxy's two, to the pod for the
  // fast path's two.
  const std::string syn = "tcp.flags.syn == 1 && tcp.flags.ack == 0 && ";
  EXPECT_TRUE(eventually([&] { return capture.count(syn + "ipv6.dst == " + ip("app1-n1", "ip6") + " && tcp.dstport == 8080") == 1; }));
  capture.stop();
  EXPECT_EQ(capture.count(syn + "tcp.dstport == 15001"), 2u);
  EXPECT_EQ(capture.count(syn + "ip.dst == " + ip("app1-n1") + " && tcp.dstport == 8080"), 1u);

  // The bytes, from the kernel, in both reporters' series: 4 connections of the pair closed,
  // and the fast path's bytes exactly (SYN and FIN are not data).
  const double expected = 2 * 1000 + 2 * kBytes;
  for (const char* reporter : {"source", "destination"}) {
    SCOPED_TRACE(reporter);
    const auto labels = connection(reporter, "app2-n1", "app1-n1");
    const Metrics m = await_metrics(*lab_, "node1", [&](const Metrics& page) {
      return page.sum("istio_tcp_connections_closed_total", labels) >= 4;
    });
    EXPECT_EQ(m.sum("istio_tcp_connections_opened_total", labels), 4) << m;
    EXPECT_EQ(m.sum("istio_tcp_connections_closed_total", labels), 4) << m;
    EXPECT_EQ(m.sum("istio_tcp_received_bytes_total", labels), expected) << m;
    EXPECT_EQ(m.sum("istio_tcp_sent_bytes_total", labels), expected) << m;
  }
  EXPECT_TRUE(lab_->log_shows("node1", "\"path\":\"kernel\"")) << "the access log marks the kernel's connections";
}

TEST_F(FastPathTest, ADenyResetsOpenFastPathConnectionsAndRefusesNewOnes) {
  up();
  ASSERT_TRUE(send("app2-n1"));
  // A connection over the fast path that is still sending when the policy comes.
  auto open = slow_client();
  ASSERT_TRUE(eventually([&] { return kernel("connect_fast") == 1; }));
  // Another identity's connection, through the proxy, unaffected by app2's verdict.
  ASSERT_TRUE(send("app3-n1"));
  EXPECT_EQ(kernel("connect_fast"), 1u) << "app3 rode app2's verdict";

  apply_policy(deny("app2"));
  std::string seen;
  EXPECT_TRUE(open->wait_for("connection abort", &seen).has_value()) << "the open connection was reset: " << seen;
  EXPECT_TRUE(lab_->log_shows("node1", "(same node) closed: denied by DENY policy default/deny-app2"))
      << lab_->log("node1");
  EXPECT_GE(stats(*lab_, "node1").at("proxy").at("revoked").get<uint64_t>(), 1u);

  // New connects go to the proxy again, which refuses them; app3 still gets through.
  const auto redirected = kernel("connect_redirected");
  EXPECT_FALSE(send("app2-n1"));
  EXPECT_FALSE(send("app2-n1"));
  EXPECT_EQ(kernel("connect_redirected"), redirected + 2);
  EXPECT_EQ(kernel("connect_fast"), 1u);
  EXPECT_TRUE(send("app3-n1"));
  EXPECT_TRUE(send("app3-n1"));
  EXPECT_EQ(kernel("connect_fast"), 2u) << "app3's second connection took its own fast path";
}

// A client that hides its socket from the reset (its process moves to a netns of its own, so
// zmeshd finds no process in the pod's netns to destroy the socket from) is still cut off: tc drops the revoked
// connection's packets both ways.
TEST_F(FastPathTest, ARevokedConnectionWhoseSocketCannotBeResetIsDroppedByTc) {
  up();
  ASSERT_TRUE(send("app2-n1"));
  const std::string client = R"(
import ctypes, socket, sys, time
s = socket.create_connection((sys.argv[1], 8080))
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x40000000) != 0:  # a netns of its own (CLONE_NEWNET): the socket stays in the pod's
    sys.exit('unshare failed')
s.settimeout(0.5)
while True:
    try:
        s.sendall(b'x' * 100)
        got = b''
        while len(got) < 100:
            got += s.recv(100 - len(got))
        print('echo ok', flush=True)
    except socket.timeout:
        print('echo timeout', flush=True)
    except OSError as e:
        print('error', e, flush=True)
        break
    time.sleep(0.2)
)";
  Process hidden(lab_->exec("app2-n1", {"python3", "-c", client, ip("app1-n1")}), Process::Stderr::Merge);
  std::string first;
  ASSERT_TRUE(hidden.wait_for("echo ok", &first)) << "the connection works before the policy: " << first;
  ASSERT_EQ(kernel("connect_fast"), 1u);

  apply_policy(deny("app2"));
  EXPECT_TRUE(lab_->log_shows("node1", "is in its netns: No such process; its packets are dropped"))
      << lab_->log("node1");
  std::string seen;
  EXPECT_TRUE(hidden.wait_for("echo timeout", &seen).has_value()) << seen;
  EXPECT_GT(kernel("tc_drop_revoked"), 0u);
}

TEST_F(FastPathTest, AnyChangeVoidsTheCacheAndTheProxyDecidesAgain) {
  up({}, {"app3-n1"});
  ASSERT_TRUE(send("app2-n1"));
  ASSERT_TRUE(send("app2-n1"));
  ASSERT_EQ(kernel("connect_fast"), 1u);
  // A change that concerns neither pod still voids every verdict: the next connect is the
  // proxy's again, and the one after it is fast again.
  apply_policy(deny("nobody"));
  const auto redirected = kernel("connect_redirected");
  ASSERT_TRUE(send("app2-n1"));
  EXPECT_EQ(kernel("connect_redirected"), redirected + 1);
  EXPECT_EQ(kernel("connect_fast"), 1u);
  ASSERT_TRUE(send("app2-n1"));
  EXPECT_EQ(kernel("connect_fast"), 2u);
  // And so does taking the policy back.
  const auto result = lab_->zmeshctl("node1", {"policy", "delete", "default/deny-nobody"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  ASSERT_TRUE(send("app2-n1"));
  EXPECT_EQ(kernel("connect_fast"), 2u);
  EXPECT_EQ(kernel("connect_redirected"), redirected + 2);
  ASSERT_TRUE(send("app2-n1"));
  EXPECT_EQ(kernel("connect_fast"), 3u);
  // And a workload change: app3-n1 enrolled at run time.
  const auto& pod = lab_->pod("app3-n1");
  const json workload = {{"name", "app3-n1"}, {"namespace", "default"}, {"serviceAccount", "app3"},
                         {"node", "node1"}, {"workloadIps", {pod.at("ip"), pod.at("ip6")}},
                         {"cgroup", pod.at("cgroup")}, {"hostVeth", pod.at("hostVeth")}};
  const std::string path = lab_->topology().at("stateDir").get<std::string>() + "/app3-n1.json";
  std::ofstream(path) << workload.dump();
  const auto enrolled = lab_->zmeshctl("node1", {"enroll", "-f", path});
  ASSERT_EQ(enrolled.exit_code, 0) << enrolled.err;
  ASSERT_TRUE(send("app2-n1"));
  EXPECT_EQ(kernel("connect_fast"), 3u);
  EXPECT_EQ(kernel("connect_redirected"), redirected + 3);
}

// A fast-path connection never went through a zmeshd: it outlives a restart, and the new
// daemon counts it when it closes (the ring buffer keeps the event while none runs).
TEST_F(FastPathTest, AFastPathConnectionOutlivesARestartAndTheNewDaemonCountsIt) {
  up();
  ASSERT_TRUE(send("app2-n1"));
  auto open = slow_client();
  ASSERT_TRUE(eventually([&] { return kernel("connect_fast") == 1; }));
  lab_->restart("node1");
  const auto line = open->read_line(std::chrono::seconds(30));
  ASSERT_TRUE(line.has_value()) << "the connection ended without its report";
  EXPECT_TRUE(json::parse(*line).at("match").get<bool>()) << *line;
  for (const char* reporter : {"source", "destination"}) {
    const auto labels = connection(reporter, "app2-n1", "app1-n1");
    const Metrics m = await_metric(*lab_, "node1", "istio_tcp_connections_closed_total", labels, 1);
    EXPECT_EQ(m.sum("istio_tcp_received_bytes_total", labels), 40 * 65536) << reporter << "\n" << m;
  }
}

TEST_F(FastPathTest, TurnedOffEveryConnectionGoesThroughTheProxy) {
  up({"--fast-path=off"});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(send("app2-n1"));
  EXPECT_EQ(kernel("connect_fast"), 0u);
  EXPECT_EQ(kernel("connect_redirected"), 3u);
  EXPECT_TRUE(lab_->log_shows("node1", "fast path off"));
}

}  // namespace
}  // namespace zmesh::test
