// Per-connection telemetry in Istio's terms, so that existing dashboards and Kiali work:
//   istio_tcp_connections_opened_total, istio_tcp_connections_closed_total,
//   istio_tcp_received_bytes_total (client -> server), istio_tcp_sent_bytes_total (server ->
//   client), istio_tcp_connections_failed_total (never carried a byte: denied, refused,
//   unreachable), each by Istio's labels (ConnectionLabels);
// and the access log: one line per connection when it ends (JSON or text, to stdout, a file,
// or off). Bytes are added when a connection closes, from the relay's own counts of what it
// moved between the two applications. Single executor; not thread-safe.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>

namespace zmesh {

struct ConnectionLabels {
  std::string reporter;  // "source" (the client's node) or "destination" (the server's node)
  std::string source_workload = "unknown", source_workload_namespace = "unknown", source_principal = "unknown";
  std::string destination_workload = "unknown", destination_workload_namespace = "unknown",
              destination_principal = "unknown";
  std::string destination_service = "unknown";
  std::string response_flags = "-";                     // "-", "DENY" (policy), "CONNECT" (unreachable)
  std::string connection_security_policy = "unknown";  // "mutual_tls" (HBONE) or "none" (plaintext)
  auto operator<=>(const ConnectionLabels&) const = default;
};

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

  void set_access_log_json(bool json) { options_.json = json; }
  const AccessLogOptions& access_log() const { return options_; }

 private:
  struct Counters {
    uint64_t opened = 0, closed = 0, failed = 0, received = 0, sent = 0;
  };
  void log(const ConnectionRecord& record, const char* outcome);

  AccessLogOptions options_;
  FILE* out_ = nullptr;
  std::map<ConnectionLabels, Counters> series_;
};

// A Prometheus label value: backslash, double quote and newline escaped.
std::string prometheus_escape(const std::string& value);

}  // namespace zmesh
