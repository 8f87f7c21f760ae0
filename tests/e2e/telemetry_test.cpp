// Telemetry end to end: Istio's TCP metrics with exact byte counts for applications zmesh has
// never seen (curl and nginx), a denied connection counted, promtool's verdict on /metrics,
// the access log, the Grafana dashboard's queries against what zmeshd exports, and the admin
// endpoints that change the daemon at run time (/logging, /quitquitquit, readiness).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <cctype>
#include <set>
#include <sstream>
#include <thread>

#include "echo.h"
#include "lab.h"
#include "metrics.h"
#include "eventually.h"

namespace zmesh::test {
namespace {

using nlohmann::json;

class TelemetryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
  }
  std::string ip(const std::string& pod) const { return lab_->pod(pod).at("ip"); }
  std::string state_dir() const { return lab_->topology().at("stateDir"); }

  // curl from `where` (no proxy, no keep-alive reuse) with `url`; output is curl's -w line.
  Result curl(const std::string& where, const std::string& url, const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> command{"curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w",
                                     "%{size_request} %{size_header} %{size_download} %{http_code}"};
    command.insert(command.end(), extra.begin(), extra.end());
    command.push_back(url);
    return run(lab_->exec(where, command));
  }
  Result http(const std::string& where, const std::string& url, const std::string& method = "GET") const {
    return run(lab_->exec(where, {"curl", "-sS", "--max-time", "5", "-X", method, "-w", "\n%{http_code}", url}));
  }
  std::string metrics(const std::string& node) const {
    const std::string at = lab_->node(node).at("zmeshd").at("metrics");
    auto got = http(node, "http://" + at + "/metrics");
    EXPECT_EQ(got.exit_code, 0) << got.err;
    return got.out.substr(0, got.out.rfind('\n') + 1);
  }
  // The value of the series `name{labels}` (labels exactly as zmeshd orders them), or -1.
  static double value(const std::string& text, const std::string& series) {
    const auto at = text.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + series.size() + 2));
  }
  static std::string labels(const std::string& reporter, const std::string& src, const std::string& src_sa,
                            const std::string& dst, const std::string& dst_sa, const std::string& flags) {
    // The lab's file config names no canonical labels or cluster: Istio's defaults (the
    // workload's name, "latest") and "unknown".
    return "{reporter=\"" + reporter + "\",source_workload=\"" + src + "\",source_canonical_service=\"" + src +
           "\",source_canonical_revision=\"latest\",source_workload_namespace=\"default\",source_principal=\"spiffe:"
           "//cluster.local/ns/default/sa/" +
           src_sa + "\",source_app=\"" + src +
           "\",source_version=\"latest\",source_cluster=\"unknown\",destination_service=\"app1.default.svc.cluster."
           "local\",destination_service_namespace=\"default\",destination_service_name=\"app1\",destination_workload=\"" +
           dst + "\",destination_canonical_service=\"" + dst +
           "\",destination_canonical_revision=\"latest\",destination_workload_namespace=\"default\",destination_"
           "principal=\"spiffe://cluster.local/ns/default/sa/" +
           dst_sa + "\",destination_app=\"" + dst +
           "\",destination_version=\"latest\",destination_cluster=\"unknown\",request_protocol=\"tcp\",response_"
           "flags=\"" +
           flags + "\",connection_security_policy=\"mutual_tls\"}";
  }
  // The access log lines in a node's log (the JSON lines among spdlog's).
  std::vector<json> access_log(const std::string& node) const {
    std::vector<json> out;
    std::istringstream lines(lab_->log(node));
    for (std::string line; std::getline(lines, line);)
      if (!line.empty() && line[0] == '{') out.push_back(json::parse(line));
    return out;
  }
  void nginx(const std::string& pod, int port, size_t file_bytes) const {
    const std::string dir = state_dir() + "/nginx-" + pod;
    std::filesystem::create_directories(dir + "/www");
    std::ofstream(dir + "/www/file") << std::string(file_bytes, 'z');
    std::ofstream(dir + "/nginx.conf") << "daemon off; master_process off; pid " << dir << "/nginx.pid; error_log "
                                       << dir << "/error.log; events { worker_connections 64; }\n"
                                       << "http { access_log off; server { listen " << port << "; root " << dir
                                       << "/www; } }\n";
    nginx_ = std::make_unique<Process>(lab_->exec(pod, {"nginx", "-c", dir + "/nginx.conf", "-p", dir}));
    ASSERT_TRUE(eventually([&] { return std::filesystem::exists(dir + "/nginx.pid"); })) << "nginx did not start";
  }

  std::unique_ptr<Lab> lab_;
  mutable std::unique_ptr<Process> nginx_;
};

TEST_F(TelemetryTest, IstioMetricsCountWhatTheApplicationsMovedOnBothNodes) {
  // One worker: one pooled connection per identity (each worker has its own pool).
  lab_ = std::make_unique<Lab>(LabOptions{.nodes = 2, .pods = 2, .mesh = true, .zmeshd_args = {"--workers", "1"},
                                          .policies = R"([
    {"name": "deny-app2", "namespace": "default", "action": "DENY", "selector": {"workloads": ["app1-n2"]},
     "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app2"]}}]}]}])"});
  nginx("app1-n2", 8080, 3000);
  // Two requests, each its own connection: curl says what it sent and received, byte for byte.
  uint64_t request = 0, response = 0;
  for (int i = 0; i < 2; ++i) {
    auto got = curl("app1-n1", "http://" + ip("app1-n2") + ":8080/file");
    ASSERT_EQ(got.exit_code, 0) << got.err;
    std::istringstream sizes(got.out);
    uint64_t sent = 0, header = 0, body = 0;
    int code = 0;
    sizes >> sent >> header >> body >> code;
    ASSERT_EQ(code, 200);
    ASSERT_EQ(body, 3000u);
    request += sent;
    response += header + body;
  }
  // A denied one: app2's identity to app1-n2.
  EXPECT_NE(curl("app2-n1", "http://" + ip("app1-n2") + ":8080/file").exit_code, 0);
  // Counted on both nodes before the checks below read them.
  for (const char* node : {"node1", "node2"})
    await_metric(*lab_, node, "istio_tcp_connections_failed_total", {{"response_flags", "DENY"}}, 1);

  // Both ends report the same connections and bytes.
  for (const auto& [node, reporter] : {std::pair{"node1", "source"}, std::pair{"node2", "destination"}}) {
    SCOPED_TRACE(node);
    const std::string text = metrics(node);
    const std::string ok = labels(reporter, "app1-n1", "app1", "app1-n2", "app1", "-");
    EXPECT_EQ(value(text, "istio_tcp_connections_opened_total" + ok), 2) << text;
    EXPECT_EQ(value(text, "istio_tcp_connections_closed_total" + ok), 2);
    EXPECT_EQ(value(text, "istio_tcp_received_bytes_total" + ok), static_cast<double>(request)) << "client to server";
    EXPECT_EQ(value(text, "istio_tcp_sent_bytes_total" + ok), static_cast<double>(response)) << "server to client";
    const std::string denied = labels(reporter, "app2-n1", "app2", "app1-n2", "app1", "DENY");
    EXPECT_EQ(value(text, "istio_tcp_connections_failed_total" + denied), 1) << text;
    // promtool, Prometheus's own checker, accepts the page.
    const std::string file = state_dir() + "/metrics-" + node + ".txt";
    std::ofstream(file) << text;
    auto checked = run({"sh", "-c", "promtool check metrics < " + file});
    EXPECT_EQ(checked.exit_code, 0) << checked.out << checked.err;
  }
  const std::string node2 = metrics("node2");
  EXPECT_EQ(value(node2, "zmesh_policy_denials_total{layer=\"proxy\"}"), 1);
  EXPECT_EQ(value(node2, "zmesh_tls_handshakes_total{side=\"server\"}"), 2) << "one pooled connection per identity";
  EXPECT_GT(value(node2, "process_resident_memory_bytes"), 1e6);
  EXPECT_GT(value(node2, "process_open_fds"), 3);
  EXPECT_GT(value(node2, "zmesh_certificate_expiration_timestamp_seconds{identity=\"spiffe://cluster.local/ns/"
                         "default/sa/app1\"}"),
            static_cast<double>(time(nullptr)));

  // The access log: one JSON line per connection, with the same figures.
  std::vector<json> closed, failed;
  for (const auto& line : access_log("node2")) {
    if (line.at("srcWorkload") == "app1-n1" && line.at("outcome") == "closed") closed.push_back(line);
    if (line.at("srcWorkload") == "app2-n1" && line.at("outcome") == "failed") failed.push_back(line);
  }
  ASSERT_EQ(closed.size(), 2u);
  EXPECT_EQ(closed[0].at("requestBytes").get<uint64_t>() + closed[1].at("requestBytes").get<uint64_t>(), request);
  EXPECT_EQ(closed[0].at("responseBytes").get<uint64_t>() + closed[1].at("responseBytes").get<uint64_t>(), response);
  for (const auto& line : closed) {
    EXPECT_EQ(line.at("direction"), "inbound");
    EXPECT_EQ(line.at("srcIdentity"), "spiffe://cluster.local/ns/default/sa/app1");
    EXPECT_EQ(line.at("dstAddr"), ip("app1-n2") + ":8080");
    EXPECT_EQ(line.at("srcAddr").get<std::string>().rfind(ip("app1-n1") + ":", 0), 0u) << "the client pod's address";
    EXPECT_EQ(line.at("service"), "app1.default.svc.cluster.local");
    EXPECT_EQ(line.at("error"), "");
    EXPECT_GE(line.at("durationMs").get<int64_t>(), 0);
  }
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].at("responseFlags"), "DENY");
  EXPECT_NE(failed[0].at("error").get<std::string>().find("default/deny-app2"), std::string::npos);

  // Every series the chart's Grafana dashboard queries is one zmeshd exports.
  std::ifstream file(source_path("helm/zmesh/dashboards/zmesh.json"));
  const json dashboard = json::parse(file);
  std::set<std::string> queried;
  for (const auto& panel : dashboard.at("panels"))
    for (const auto& target : panel.at("targets")) {
      const std::string expr = target.at("expr");
      // Every identifier starting istio_tcp_, zmesh_ or process_ names a series.
      for (size_t at = 0; at < expr.size();) {
        const size_t end = expr.find_first_not_of("abcdefghijklmnopqrstuvwxyz_", at);
        const std::string word = expr.substr(at, end - at);
        for (const char* prefix : {"istio_tcp_", "zmesh_", "process_"})
          if (word.rfind(prefix, 0) == 0 && (at == 0 || !std::isalnum(static_cast<unsigned char>(expr[at - 1]))))
            queried.insert(word);
        at = end == std::string::npos ? expr.size() : end + 1;
      }
    }
  EXPECT_GE(queried.size(), 10u);
  for (const auto& name : queried) EXPECT_NE(node2.find("# TYPE " + name + " "), std::string::npos) << name;
}

TEST_F(TelemetryTest, LoggingQuitquitquitAndReadinessAtRunTime) {
  lab_ = std::make_unique<Lab>(LabOptions{.nodes = 1, .pods = 2, .mesh = true});
  const std::string admin = "http://127.0.0.1:15000";
  const std::string ready = "http://" + lab_->node("node1").at("zmeshd").at("readiness").get<std::string>() +
                            "/healthz/ready";
  auto shown = http("node1", admin + "/logging");
  EXPECT_EQ(json::parse(shown.out.substr(0, shown.out.rfind('\n'))).at("level"), "info") << shown.out;
  EXPECT_NE(http("node1", admin + "/logging?level=debug").out.find("405"), std::string::npos) << "a change needs POST";
  auto debug = http("node1", admin + "/logging?level=debug&accessLogFormat=text", "POST");
  EXPECT_NE(debug.out.find("\"level\":\"debug\""), std::string::npos) << debug.out;
  EXPECT_NE(debug.out.find("\"accessLogFormat\":\"text\""), std::string::npos) << debug.out;
  EXPECT_NE(http("node1", admin + "/logging?level=loud", "POST").out.find("400"), std::string::npos);
  EXPECT_NE(http("node1", admin + "/logging?colour=red", "POST").out.find("unknown parameter 'colour'"),
            std::string::npos);
  // The text access log now (same node: both reporters log the connection).
  auto server = echo_server(*lab_, "app2-n1", 8080);
  ASSERT_EQ(echo_send(*lab_, "app1-n1", ip("app2-n1"), 8080, 1000).exit_code, 0);
  EXPECT_TRUE(lab_->log_shows("node1", " outbound closed c")) << lab_->log("node1");
  EXPECT_TRUE(lab_->log_shows("node1", "request_bytes=1000 response_bytes=1000"));

  // /quitquitquit: readiness turns 503 at once, the open connection finishes, zmeshd exits.
  EXPECT_EQ(http("node1", ready).out, "ready\n\n200");
  auto slow_server = echo_server(*lab_, "app2-n1", 8081);
  Process slow(lab_->exec("app1-n1", {bin_path("zm-echo"), "send", "--to", ip("app2-n1"), "--port", "8081",
                                      "--bytes", std::to_string(20 * 65536), "--pause-ms", "100"}));
  await_metric(*lab_, "node1", "istio_tcp_connections_opened_total",
               {{"reporter", "source"}, {"destination_workload", "app2-n1"}}, 2);  // the first, and this one
  auto quit = http("node1", admin + "/quitquitquit", "POST");
  EXPECT_NE(quit.out.find("draining"), std::string::npos) << quit.out;
  EXPECT_EQ(http("node1", ready).out, "not ready: draining\n\n503");
  const auto line = slow.read_line(std::chrono::seconds(30));
  ASSERT_TRUE(line.has_value());
  EXPECT_TRUE(json::parse(*line).at("match").get<bool>()) << "the open connection finished while draining";
  const pid_t pid = lab_->node("node1").at("zmeshd").at("pid");
  EXPECT_TRUE(exits(pid)) << "zmeshd exited after draining";
  EXPECT_TRUE(lab_->log_shows("node1", "zmeshd: /quitquitquit, draining"));
}

}  // namespace
}  // namespace zmesh::test
