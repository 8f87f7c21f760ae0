// The proxy's workers (--workers): connections are handed to the workers in turn, each moves
// its own connections' bytes on its own thread with its own HBONE pool, the counters are
// summed for /metrics and shown per worker, and reauthorize and drain reach every worker.
// Behaviour only: which worker took a connection, which thread spent CPU on it; no timings.
//
//   app1-n1 ── node1 zmeshd (2 workers) ══ HBONE ══ node2 zmeshd (2 workers) ── app1-n2
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "echo.h"
#include "eventually.h"
#include "lab.h"
#include "metrics.h"

namespace zmesh::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kWorkerAccepted = "zmesh_worker_connections_accepted_total";
constexpr const char* kWorkerActive = "zmesh_worker_connections_active";

class WorkersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
    lab_ = std::make_unique<Lab>(LabOptions{.nodes = 2, .pods = 1, .mesh = true, .zmeshd_args = {"--workers", "2"}});
    server_ = echo_server(*lab_, "app1-n2", 8080, {"--connections", "2"});
  }
  pid_t zmeshd(const std::string& node) const { return lab_->node(node).at("zmeshd").at("pid").get<pid_t>(); }
  std::string ip(const std::string& pod) const { return lab_->pod(pod).at("ip"); }
  double accepted(const std::string& node, int worker) const {
    return Metrics::scrape(*lab_, node).sum(kWorkerAccepted, {{"worker", std::to_string(worker)}});
  }
  // The CPU time (clock ticks, user + system) of zmeshd's thread named `name`; -1 if none.
  long thread_ticks(const std::string& node, const std::string& name) const {
    const fs::path tasks = "/proc/" + std::to_string(zmeshd(node)) + "/task";
    for (const auto& task : fs::directory_iterator(tasks)) {
      std::string comm;
      std::getline(std::ifstream(task.path() / "comm"), comm);
      if (comm != name) continue;
      std::string stat;
      std::getline(std::ifstream(task.path() / "stat"), stat);
      // Fields after the ")" that ends comm: state is field 3, utime 14, stime 15.
      std::istringstream rest(stat.substr(stat.rfind(')') + 2));
      std::string field;
      long utime = 0, stime = 0;
      for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::stol(field);
        if (i == 15) stime = std::stol(field);
      }
      return utime + stime;
    }
    return -1;
  }
  // From app1-n1 to app1-n2:8080: `chunks` of 64 KiB, `pause_ms` apart, each echoed back.
  std::unique_ptr<Process> client(int chunks, int pause_ms) const {
    return std::make_unique<Process>(
        lab_->exec("app1-n1", {bin_path("zm-echo"), "send", "--to", ip("app1-n2"), "--port", "8080", "--bytes",
                               std::to_string(chunks * 65536), "--pause-ms", std::to_string(pause_ms)}),
        Process::Stderr::Merge);
  }
  static bool whole(Process& p, std::string* seen) {
    const auto line = p.read_line(std::chrono::seconds(60));
    if (seen && line) *seen = *line;
    return p.wait() == 0 && line && json::parse(*line).value("match", false);
  }

  std::unique_ptr<Lab> lab_;
  std::unique_ptr<Process> server_;
};

TEST_F(WorkersTest, TwoConnectionsGoToTwoWorkersAndEachWorkersThreadMovesItsBytes) {
  for (const char* node : {"node1", "node2"})
    ASSERT_GE(thread_ticks(node, "zmesh-worker-1"), 0) << node << "'s zmeshd has no second worker thread";
  double before[2][2];
  for (int n = 0; n < 2; ++n)
    for (int w = 0; w < 2; ++w) before[n][w] = accepted(n ? "node2" : "node1", w);
  const long ticks1 = thread_ticks("node1", "zmesh-worker-1"), ticks2 = thread_ticks("node2", "zmesh-worker-1");

  // Two bulk connections at once: 64 MiB each way each.
  auto a = client(1024, 0), b = client(1024, 0);
  std::string seen;
  EXPECT_TRUE(whole(*a, &seen)) << seen;
  EXPECT_TRUE(whole(*b, &seen)) << seen;

  // node1 handed one outbound connection to each worker; each worker opened its own pooled
  // HBONE connection, which node2 handed to its workers in turn.
  for (int n = 0; n < 2; ++n) {
    const std::string node = n ? "node2" : "node1";
    for (int w = 0; w < 2; ++w) EXPECT_EQ(accepted(node, w) - before[n][w], 1) << node << " worker " << w;
  }
  const auto node1 = Metrics::scrape(*lab_, "node1");
  EXPECT_EQ(node1.sum("zmesh_connections_accepted_total", {{"listener", "outbound"}}), 2)
      << "the listener's count is the workers' sum: " << node1;
  EXPECT_EQ(node1.sum("zmesh_tls_handshakes_total", {{"side", "client"}}), 2) << "an HBONE pool per worker: " << node1;
  EXPECT_GT(node1.sum("zmesh_worker_cpu_seconds_total", {{"worker", "1"}}), 0) << node1;
  const auto node2 = await_metric(*lab_, "node2", "istio_tcp_connections_closed_total", {{"reporter", "destination"}}, 2);
  EXPECT_EQ(node2.sum("istio_tcp_received_bytes_total", {{"reporter", "destination"}}), 2 * (64 << 20)) << node2;

  // The second worker's own thread did the work of its connection, on both nodes.
  EXPECT_GT(thread_ticks("node1", "zmesh-worker-1"), ticks1);
  EXPECT_GT(thread_ticks("node2", "zmesh-worker-1"), ticks2);
  const auto workers = stats(*lab_, "node1").at("workers");
  ASSERT_EQ(workers.size(), 2u) << workers;
  EXPECT_GT(workers.at(1).at("cpuSeconds").get<double>(), 0) << workers;
}

TEST_F(WorkersTest, APolicyThatNowDeniesClosesTheConnectionsOfEveryWorker) {
  // Two connections held open (about 4 s each), one on each of node2's workers.
  auto a = client(40, 100), b = client(40, 100);
  await_metrics(*lab_, "node2", [](const Metrics& m) {
    return m.sum(kWorkerActive, {{"worker", "0"}}) >= 1 && m.sum(kWorkerActive, {{"worker", "1"}}) >= 1 &&
           m.sum("istio_tcp_connections_opened_total", {{"reporter", "destination"}}) >= 2;
  });
  const json policy = {{"name", "deny-app1"},
                       {"namespace", "default"},
                       {"action", "DENY"},
                       {"selector", {{"workloads", {"app1-n2"}}}},
                       {"rules", {{{"from", {{{"source", {{"principals", {"cluster.local/ns/default/sa/app1"}}}}}}}}}}};
  const std::string path = lab_->topology().at("stateDir").get<std::string>() + "/deny.json";
  std::ofstream(path) << policy.dump();
  const auto applied = lab_->zmeshctl("node2", {"policy", "apply", "-f", path});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;

  std::string seen;
  EXPECT_FALSE(whole(*a, &seen)) << "still open after the DENY: " << seen;
  EXPECT_FALSE(whole(*b, &seen)) << "still open after the DENY: " << seen;
  const auto node2 = await_metric(*lab_, "node2", "zmesh_connections_revoked_total", {}, 2);
  EXPECT_EQ(node2.sum("zmesh_connections_revoked_total"), 2) << node2;
}

TEST_F(WorkersTest, SigtermDrainsTheConnectionsOfEveryWorkerThenExits) {
  auto a = client(30, 100), b = client(30, 100);
  await_metrics(*lab_, "node1", [](const Metrics& m) {
    return m.sum(kWorkerActive, {{"worker", "0"}}) >= 1 && m.sum(kWorkerActive, {{"worker", "1"}}) >= 1;
  });
  const pid_t pid = zmeshd("node1");
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  std::string seen;
  EXPECT_TRUE(whole(*a, &seen)) << "a connection was cut during drain: " << seen;
  EXPECT_TRUE(whole(*b, &seen)) << "a connection was cut during drain: " << seen;
  EXPECT_TRUE(exits(pid)) << "zmeshd did not exit after draining";
  EXPECT_TRUE(lab_->log_shows("node1", "zmeshd: stopped")) << lab_->log("node1");
}

}  // namespace
}  // namespace zmesh::test
