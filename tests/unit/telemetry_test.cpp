// Istio's TCP metrics and the access log, without a network: the exposition text Prometheus
// parses and the lines a log pipeline parses.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "zmesh/telemetry.h"

namespace zmesh {
namespace {

ConnectionRecord record() {
  ConnectionRecord r;
  r.id = 7;
  r.direction = "inbound";
  r.labels.reporter = "destination";
  r.labels.source_workload = "web-0";
  r.labels.source_workload_namespace = "shop";
  r.labels.source_principal = "spiffe://cluster.local/ns/shop/sa/web";
  r.labels.destination_workload = "db-0";
  r.labels.connection_security_policy = "mutual_tls";
  r.source = {boost::asio::ip::make_address("10.244.1.2"), 40000};
  r.destination = {boost::asio::ip::make_address("fd00::5"), 5432};
  r.request_bytes = 100;
  r.response_bytes = 2000;
  return r;
}

TEST(Telemetry, CountsEachLabelSetAndWritesEveryFamilyOnce) {
  Telemetry t(AccessLogOptions{"off"});
  auto r = record();
  t.opened(r.labels);
  t.closed(r);
  t.opened(r.labels);
  t.closed(r);
  auto denied = record();
  denied.labels.response_flags = "DENY";
  t.failed(denied);
  const std::string text = t.prometheus_text();
  const std::string ok =
      "{reporter=\"destination\",source_workload=\"web-0\",source_canonical_service=\"unknown\","
      "source_canonical_revision=\"unknown\",source_workload_namespace=\"shop\",source_principal=\"spiffe:"
      "//cluster.local/ns/shop/sa/web\",source_app=\"unknown\",source_version=\"unknown\",source_cluster=\"unknown\","
      "destination_service=\"unknown\",destination_service_namespace=\"unknown\",destination_service_name=\"unknown\","
      "destination_workload=\"db-0\",destination_canonical_service=\"unknown\",destination_canonical_revision=\"unknown\","
      "destination_workload_namespace=\"unknown\",destination_principal=\"unknown\",destination_app=\"unknown\","
      "destination_version=\"unknown\",destination_cluster=\"unknown\",request_protocol=\"tcp\",response_flags=\"-\","
      "connection_security_policy=\"mutual_tls\"}";
  EXPECT_NE(text.find("istio_tcp_connections_opened_total" + ok + " 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("istio_tcp_received_bytes_total" + ok + " 200\n"), std::string::npos);
  EXPECT_NE(text.find("istio_tcp_sent_bytes_total" + ok + " 4000\n"), std::string::npos);
  EXPECT_NE(text.find("response_flags=\"DENY\",connection_security_policy=\"mutual_tls\"} 1\n"), std::string::npos);
  for (const char* family : {"istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
                             "istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total",
                             "istio_tcp_connections_failed_total"}) {
    const std::string type = std::string("# TYPE ") + family + " counter\n";
    EXPECT_EQ(text.find(type), text.rfind(type)) << family << " declared once";
    EXPECT_NE(text.find(type), std::string::npos) << family;
  }
}

TEST(Telemetry, LabelValuesAreEscaped) {
  EXPECT_EQ(prometheus_escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  Telemetry t(AccessLogOptions{"off"});
  auto r = record();
  r.labels.source_workload = "we\"ird";
  t.opened(r.labels);
  EXPECT_NE(t.prometheus_text().find("source_workload=\"we\\\"ird\""), std::string::npos);
}

TEST(Telemetry, AccessLogLinesInJsonAndText) {
  Telemetry t(AccessLogOptions{"off"});
  auto r = record();
  r.error = "Connection reset by peer";
  const auto line = nlohmann::json::parse(t.access_log_line(r, "closed"));
  EXPECT_EQ(line.at("connection"), "c7");
  EXPECT_EQ(line.at("srcAddr"), "10.244.1.2:40000");
  EXPECT_EQ(line.at("dstAddr"), "[fd00::5]:5432");
  EXPECT_EQ(line.at("requestBytes"), 100);
  EXPECT_EQ(line.at("responseBytes"), 2000);
  EXPECT_EQ(line.at("error"), "Connection reset by peer");
  EXPECT_EQ(line.at("outcome"), "closed");
  t.set_access_log_json(false);
  const std::string text = t.access_log_line(r, "closed");
  EXPECT_NE(text.find(" inbound closed c7 10.244.1.2:40000 (spiffe://cluster.local/ns/shop/sa/web) -> [fd00::5]:5432"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("request_bytes=100 response_bytes=2000"), std::string::npos);
  EXPECT_NE(text.find("error=\"Connection reset by peer\""), std::string::npos);
}

TEST(Telemetry, AnAccessLogFileThatCannotBeOpenedIsAClearError) {
  try {
    Telemetry t(AccessLogOptions{"/nonexistent-dir/access.log"});
    FAIL() << "accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("access log /nonexistent-dir/access.log: No such file"), std::string::npos)
        << e.what();
  }
}

// Kiali and Istio's dashboards read the istio_tcp_* series by ztunnel's labels: the set is the
// one Istio documents for TCP metrics (istio.io, "Istio Standard Metrics", labels), and every
// label the chart's Grafana dashboard groups or filters these series by is one of them.
TEST(Telemetry, TheLabelSetIsIstiosAndCoversTheDashboard) {
  const std::set<std::string> istio = {
      "reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
      "source_canonical_service", "source_canonical_revision", "source_cluster", "destination_workload",
      "destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
      "destination_service", "destination_service_name", "destination_service_namespace",
      "destination_canonical_service", "destination_canonical_revision", "destination_cluster", "request_protocol",
      "response_flags", "connection_security_policy"};
  std::set<std::string> ours;
  for (const auto& [name, value] : ConnectionLabels{}.fields()) EXPECT_TRUE(ours.insert(name).second) << name << " twice";
  EXPECT_EQ(ours, istio);
  Telemetry t(AccessLogOptions{"off"});
  t.opened(record().labels);
  const std::string text = t.prometheus_text();
  for (const auto& name : istio)
    EXPECT_TRUE(text.find("," + name + "=\"") != std::string::npos || text.find("{" + name + "=\"") != std::string::npos)
        << name << " is written";

  // The dashboard: every label inside by (...) or {...} of an istio_tcp_* query.
  std::ifstream in(std::string(ZMESH_SOURCE_DIR) + "/helm/zmesh/dashboards/zmesh.json");
  ASSERT_TRUE(in) << "the chart's dashboard";
  const auto dashboard = nlohmann::json::parse(in);
  size_t queries = 0;
  std::function<void(const nlohmann::json&)> walk = [&](const nlohmann::json& j) {
    if (j.is_object() && j.contains("expr") && j["expr"].is_string()) {
      const std::string expr = j["expr"];
      if (expr.find("istio_tcp_") == std::string::npos) return;
      ++queries;
      static const std::regex label(R"(([a-z_]+)\s*(=~|!=|!~|=)\s*")"), by(R"(by \(([^)]*)\))");
      for (auto it = std::sregex_iterator(expr.begin(), expr.end(), label); it != std::sregex_iterator(); ++it)
        EXPECT_TRUE(istio.contains((*it)[1].str())) << (*it)[1].str() << " in " << expr;
      for (auto it = std::sregex_iterator(expr.begin(), expr.end(), by); it != std::sregex_iterator(); ++it) {
        std::stringstream names((*it)[1].str());
        for (std::string name; std::getline(names, name, ',');) {
          name.erase(0, name.find_first_not_of(' '));
          name.erase(name.find_last_not_of(' ') + 1);
          EXPECT_TRUE(istio.contains(name)) << name << " in " << expr;
        }
      }
    }
    if (j.is_structured())
      for (const auto& child : j) walk(child);
  };
  walk(dashboard);
  EXPECT_GE(queries, 5u) << "the dashboard's istio_tcp_* panels were found";
}

}  // namespace
}  // namespace zmesh
