// Upgrades of the pinned state: a node's zmeshd replaced by one whose maps have another layout
// (zmeshd-other-layout, built with ZM_LAYOUT_TEST_VARIANT: zm_workloads one field longer,
// zm_dests half as large, as a new version might change them), and back again. The new daemon
// must take over the pins on its own (no --cleanup), traffic must flow after each swap, and a
// STRICT pod must never accept plaintext meanwhile: a prober on node2 tries the whole time, and
// a capture at the pod's veth shows none of its packets got that far. A
// connection open when the old daemon gets SIGTERM finishes while it drains (the DaemonSet's
// rolling update: the old pod terminates, with terminationGracePeriodSeconds for the drain,
// before the new one starts; both use the node's ports, so they cannot overlap).
//
//   prober (node2's own netns, plaintext) ──▶ app1-n1:8080 (STRICT)    app1-n2 ══ HBONE ══▶ app1-n1
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "capture.h"
#include "echo.h"
#include "eventually.h"
#include "lab.h"
#include "metrics.h"
#include "zmesh_maps.h"

namespace zmesh::test {
namespace {

// Plaintext connects to ADDR:PORT until the file STOP exists, the count of attempts kept in the
// file COUNT; then one JSON line.
constexpr const char* kProber = R"(
import json, os, socket, sys
addr, port, stop, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
attempts = connected = 0
print('probing', flush=True)
while not os.path.exists(stop):
    s = socket.socket()
    s.settimeout(0.05)
    attempts += 1
    try:
        s.connect((addr, port))
        connected += 1
    except OSError:
        pass
    s.close()
    with open(count + '.tmp', 'w') as f:
        f.write(str(attempts))
    os.replace(count + '.tmp', count)
print(json.dumps({'attempts': attempts, 'connected': connected}), flush=True)
)";

class UpgradeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
    lab_ = std::make_unique<Lab>(LabOptions{.nodes = 2, .pods = 1, .mesh = true, .restart_delay_ms = 0});
  }
  std::string pins() const { return lab_->node("node1").at("bpfRoot"); }
  // The value size of a pinned map, as the kernel has it.
  uint64_t value_size(const std::string& map) const {
    auto shown = run({"bpftool", "-j", "map", "show", "pinned", pins() + "/" + map});
    EXPECT_EQ(shown.exit_code, 0) << shown.err;
    return shown.exit_code == 0 ? nlohmann::json::parse(shown.out).at("bytes_value").get<uint64_t>() : 0;
  }
  uint64_t max_entries(const std::string& map) const {
    auto shown = run({"bpftool", "-j", "map", "show", "pinned", pins() + "/" + map});
    return shown.exit_code == 0 ? nlohmann::json::parse(shown.out).at("max_entries").get<uint64_t>() : 0;
  }
  static void stop(pid_t pid) {
    kill(pid, SIGTERM);
    eventually([&] { return kill(pid, 0) != 0; }, std::chrono::seconds(15));
  }
  void expect_traffic() {
    const auto sent = echo_send(*lab_, "app1-n2", lab_->pod("app1-n1").at("ip"), 8080, 1 << 20);
    ASSERT_EQ(sent.exit_code, 0) << sent.out << sent.err;
    EXPECT_TRUE(nlohmann::json::parse(sent.out).at("match").get<bool>());
  }
  // Waits until the prober has tried a few more times: so much for "throughout".
  void probed_meanwhile() {
    auto attempts = [&] {
      std::ifstream in(count_file_);
      int n = 0;
      in >> n;
      return n;
    };
    const int before = attempts();
    EXPECT_TRUE(eventually([&] { return attempts() >= before + 3; })) << "the prober stopped";
  }
  std::unique_ptr<Lab> lab_;
  std::string count_file_;
};

TEST_F(UpgradeTest, AnotherMapLayoutTakesOverThePinsAndStrictPodsStayProtectedThroughout) {
  auto server = echo_server(*lab_, "app1-n1", 8080, {"--connections", "1000"});
  const std::string stop_file = lab_->topology().at("stateDir").get<std::string>() + "/stop-probing";
  count_file_ = lab_->topology().at("stateDir").get<std::string>() + "/probes";
  Process prober(
      lab_->exec("node2", {"python3", "-c", kProber, lab_->pod("app1-n1").at("ip"), "8080", stop_file, count_file_}));
  ASSERT_TRUE(prober.wait_for("probing").has_value());
  // And a capture at the STRICT pod's veth, the last hop into it, the whole time.
  Capture capture(lab_->node("node1").at("netns"), "vpod1",
                  lab_->topology().at("stateDir").get<std::string>() + "/strict-pod.pcap");
  probed_meanwhile();
  expect_traffic();
  ASSERT_EQ(value_size("zm_workloads"), sizeof(zm_workload));
  const uint64_t dests = max_entries("zm_dests");

  // Upgrade: the old daemon drains and exits (its programs stay pinned and capturing); the new
  // one, of another layout, starts on the same pins. A connection open when the old one is
  // told to stop (the kubelet's SIGTERM) finishes whole while it drains.
  Process open(lab_->exec("app1-n2", {bin_path("zm-echo"), "send", "--to", lab_->pod("app1-n1").at("ip"), "--port",
                                      "8080", "--bytes", std::to_string(30 * 65536), "--pause-ms", "100"}));
  ASSERT_TRUE(eventually([&] {
    const auto s = stats(*lab_, "node1");
    return s.is_object() && s.at("proxy").at("active").get<uint64_t>() >= 1;
  })) << "the transfer did not start";
  stop(lab_->node("node1").at("zmeshd").at("pid").get<pid_t>());
  const auto finished = open.read_line(std::chrono::seconds(30));
  ASSERT_TRUE(finished.has_value()) << "the open connection did not end";
  EXPECT_TRUE(nlohmann::json::parse(*finished).at("match").get<bool>()) << "cut short by the upgrade: " << *finished;
  probed_meanwhile();  // while no daemon runs
  Process upgraded(lab_->zmeshd_command("node1", {}, bin_path("zmeshd-other-layout")), Process::Stderr::Merge);
  ASSERT_TRUE(lab_->wait_ready("node1")) << "the new layout did not take over the pins";
  EXPECT_EQ(value_size("zm_workloads"), sizeof(zm_workload) + 8) << "zm_workloads has the new layout";
  EXPECT_EQ(max_entries("zm_dests"), dests / 2) << "and zm_dests the new capacity";
  EXPECT_FALSE(std::filesystem::exists(pins() + "/old")) << "the old maps were released";
  probed_meanwhile();
  expect_traffic();

  // And back (a rollback): the same takeover the other way.
  upgraded.kill(SIGTERM);
  EXPECT_EQ(upgraded.wait(), 0) << "a drained exit";
  probed_meanwhile();
  Process rolled_back(lab_->zmeshd_command("node1"), Process::Stderr::Merge);
  ASSERT_TRUE(lab_->wait_ready("node1"));
  probed_meanwhile();
  EXPECT_EQ(value_size("zm_workloads"), sizeof(zm_workload));
  EXPECT_EQ(max_entries("zm_dests"), dests);
  expect_traffic();

  // Throughout, not one plaintext connect from node2 reached the STRICT pod.
  std::ofstream(stop_file) << "stop";
  const auto report = prober.read_line(std::chrono::seconds(10));
  ASSERT_TRUE(report.has_value());
  // The capture: a marker sent after the prober stopped (UDP, which the mesh lets through) must
  // be in the file before it stops.
  auto packets = [&](const std::string& filter) { return capture.count(filter); };
  const std::string pod = lab_->pod("app1-n1").at("ip");
  EXPECT_TRUE(eventually([&] {
    run(lab_->exec("node1", {"python3", "-c",
                             "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'end', ('" + pod +
                                 "', 9))"}));
    return packets("udp.dstport == 9") > 0;
  })) << "the capture never held the marker";
  capture.stop();
  EXPECT_GT(packets("tcp.port == 8080"), 0u) << "the capture saw the mesh deliver to the pod";
  EXPECT_EQ(packets("ip.src == " + lab_->node("node2").at("ip").get<std::string>()), 0u)
      << "a packet from node2's address (the prober's plaintext) reached the STRICT pod";
  const auto probed = nlohmann::json::parse(*report);
  EXPECT_EQ(probed.at("connected"), 0) << "a STRICT pod accepted plaintext during an upgrade";
  const std::string node2 = lab_->node("node2").at("ip");
  while (auto line = server->read_line(std::chrono::milliseconds(200)))
    EXPECT_EQ(line->find("\"peer\":\"" + node2), std::string::npos) << *line;
  rolled_back.kill(SIGTERM);
  EXPECT_EQ(rolled_back.wait(), 0);
}

}  // namespace
}  // namespace zmesh::test
