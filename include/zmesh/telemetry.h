// Per-connection telemetry in Istio's terms, so that existing dashboards and Kiali work:
//   istio_tcp_connections_opened_total, istio_tcp_connections_closed_total,
//   istio_tcp_received_bytes_total (client -> server), istio_tcp_sent_bytes_total (server ->
//   client), istio_tcp_connections_failed_total (never carried a byte: denied, refused,
//   unreachable), each by Istio's labels (ConnectionLabels);
// and the access log: one line per connection when it ends (JSON or text, to stdout, a file,
// or off). Bytes are added when a connection closes, from the relay's own counts of what it
// moved between the two applications. Thread-safe: every proxy worker reports here.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace zmesh {

// Istio's label set for the istio_tcp_* series, as ztunnel writes it (and Kiali and Istio's
// dashboards read it); kIstioTcpLabels names them in the order they are written.
struct ConnectionLabels {
  std::string reporter;  // "source" (the client's node) or "destination" (the server's node)
  std::string source_workload = "unknown", source_canonical_service = "unknown", source_canonical_revision = "unknown",
              source_workload_namespace = "unknown", source_principal = "unknown", source_app = "unknown",
              source_version = "unknown", source_cluster = "unknown";
  std::string destination_service = "unknown", destination_service_namespace = "unknown",
              destination_service_name = "unknown";
  std::string destination_workload = "unknown", destination_canonical_service = "unknown",
              destination_canonical_revision = "unknown", destination_workload_namespace = "unknown",
              destination_principal = "unknown", destination_app = "unknown", destination_version = "unknown",
              destination_cluster = "unknown";
  std::string request_protocol = "tcp";
  std::string response_flags = "-";                     // "-", "DENY" (policy), "CONNECT" (unreachable)
  std::string connection_security_policy = "unknown";  // "mutual_tls" (HBONE) or "none" (plaintext)
  auto operator<=>(const ConnectionLabels&) const = default;
  // Each label's name and value, in kIstioTcpLabels' order.
  std::vector<std::pair<const char*, const std::string*>> fields() const;
};
inline constexpr const char* kIstioTcpLabels[] = {
    "reporter", "source_workload", "source_canonical_service", "source_canonical_revision",
    "source_workload_namespace", "source_principal", "source_app", "source_version", "source_cluster",
    "destination_service", "destination_service_namespace", "destination_service_name", "destination_workload",
    "destination_canonical_service", "destination_canonical_revision", "destination_workload_namespace",
    "destination_principal", "destination_app", "destination_version", "destination_cluster", "request_protocol",
    "response_flags", "connection_security_policy"};

struct ConnectionRecord {
  uint64_t id = 0;
  std::string direction;  // "outbound" (from a pod of this node) or "inbound" (to one)
  ConnectionLabels labels;
  boost::asio::ip::tcp::endpoint source, destination;
  uint64_t request_bytes = 0;   // client -> server
  uint64_t response_bytes = 0;  // server -> client
  std::chrono::system_clock::time_point started = std::chrono::system_clock::now();
  std::chrono::steady_clock::time_point started_steady = std::chrono::steady_clock::now();
  std::string error;  // empty when both directions ended cleanly
  std::string path = "proxy";  // "kernel": a same-node fast-path connection, counted by the kernel
};

struct AccessLogOptions {
  std::string target = "-";  // "-" = stdout, "off", or a file (appended)
  bool json = true;          // false = one human line
};

class Telemetry {
 public:
  explicit Telemetry(AccessLogOptions options = {});  // throws when the file cannot be opened
  ~Telemetry();
  Telemetry(const Telemetry&) = delete;
  Telemetry& operator=(const Telemetry&) = delete;

  void opened(const ConnectionLabels& labels);
  void closed(const ConnectionRecord& record);  // counts and logs it
  void failed(const ConnectionRecord& record);  // counts and logs it

  // The istio_tcp_* series in Prometheus text format (HELP/TYPE once per family).
  std::string prometheus_text() const;
  // The access log line for `record` (without the newline), in the current format.
  std::string access_log_line(const ConnectionRecord& record, const char* outcome) const;

  void set_access_log_json(bool json) {
    std::lock_guard lock(mutex_);
    options_.json = json;
  }
  AccessLogOptions access_log() const {
    std::lock_guard lock(mutex_);
    return options_;
  }

 private:
  struct Counters {
    uint64_t opened = 0, closed = 0, failed = 0, received = 0, sent = 0;
  };
  void log(const ConnectionRecord& record, const char* outcome);  // with mutex_ held
  std::string line(const ConnectionRecord& record, const char* outcome, bool json) const;

  mutable std::mutex mutex_;  // the series, the format, the file
  AccessLogOptions options_;
  FILE* out_ = nullptr;
  std::map<ConnectionLabels, Counters> series_;
};

// A Prometheus label value: backslash, double quote and newline escaped.
std::string prometheus_escape(const std::string& value);

}  // namespace zmesh
