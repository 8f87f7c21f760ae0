// Istio's TCP metrics and the access log (see include/zmesh/telemetry.h).
#include "zmesh/json.h"
#include "zmesh/telemetry.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "zmesh/address.h"

namespace zmesh {
namespace {

std::string iso_time(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char out[40];
  const size_t n = std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(out + n, sizeof out - n, ".%03dZ", static_cast<int>(ms));
  return out;
}

std::string labels_text(const ConnectionLabels& l) {
  std::string out = "{";
  for (const auto& [name, value] : l.fields()) {
    if (out.size() > 1) out += ',';
    out += std::string(name) + "=\"" + prometheus_escape(*value) + "\"";
  }
  return out + "}";
}

}  // namespace

std::vector<std::pair<const char*, const std::string*>> ConnectionLabels::fields() const {
  const std::string* values[] = {&reporter,
                                 &source_workload,
                                 &source_canonical_service,
                                 &source_canonical_revision,
                                 &source_workload_namespace,
                                 &source_principal,
                                 &source_app,
                                 &source_version,
                                 &source_cluster,
                                 &destination_service,
                                 &destination_service_namespace,
                                 &destination_service_name,
                                 &destination_workload,
                                 &destination_canonical_service,
                                 &destination_canonical_revision,
                                 &destination_workload_namespace,
                                 &destination_principal,
                                 &destination_app,
                                 &destination_version,
                                 &destination_cluster,
                                 &request_protocol,
                                 &response_flags,
                                 &connection_security_policy};
  static_assert(std::size(values) == std::size(kIstioTcpLabels));
  std::vector<std::pair<const char*, const std::string*>> out;
  for (size_t i = 0; i < std::size(values); ++i) out.emplace_back(kIstioTcpLabels[i], values[i]);
  return out;
}

std::string prometheus_escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

Telemetry::Telemetry(AccessLogOptions options) : options_(std::move(options)) {
  if (options_.target == "-") {
    out_ = stdout;
  } else if (options_.target != "off" && !options_.target.empty()) {
    out_ = std::fopen(options_.target.c_str(), "ae");
    if (!out_) throw std::runtime_error("access log " + options_.target + ": " + std::strerror(errno));
  }
}

Telemetry::~Telemetry() {
  if (out_ && out_ != stdout) std::fclose(out_);
}

void Telemetry::opened(const ConnectionLabels& labels) {
  std::lock_guard lock(mutex_);
  ++series_[labels].opened;
}

void Telemetry::closed(const ConnectionRecord& record) {
  std::lock_guard lock(mutex_);
  auto& c = series_[record.labels];
  ++c.closed;
  c.received += record.request_bytes;
  c.sent += record.response_bytes;
  log(record, "closed");
}

void Telemetry::failed(const ConnectionRecord& record) {
  std::lock_guard lock(mutex_);
  ++series_[record.labels].failed;
  log(record, "failed");
}

void Telemetry::log(const ConnectionRecord& record, const char* outcome) {
  if (!out_) return;
  const std::string text = line(record, outcome, options_.json) + "\n";
  std::fwrite(text.data(), 1, text.size(), out_);
  std::fflush(out_);  // a line per connection, whole, even if the daemon is killed next
}

std::string Telemetry::access_log_line(const ConnectionRecord& record, const char* outcome) const {
  return line(record, outcome, access_log().json);
}

std::string Telemetry::line(const ConnectionRecord& r, const char* outcome, bool json) const {
  const auto duration =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - r.started_steady).count();
  const auto& l = r.labels;
  if (!json) {
    std::ostringstream out;
    out << iso_time(r.started) << ' ' << r.direction << ' ' << outcome << " c" << r.id << ' ' << to_string(r.source)
        << " (" << l.source_principal << ") -> " << to_string(r.destination) << " (" << l.destination_principal
        << ") service=" << l.destination_service << " request_bytes=" << r.request_bytes
        << " response_bytes=" << r.response_bytes << " duration_ms=" << duration << " flags=" << l.response_flags
        << " security=" << l.connection_security_policy << " path=" << r.path;
    if (!r.error.empty()) out << " error=\"" << r.error << '"';
    return out.str();
  }
  nlohmann::json j = {{"time", iso_time(r.started)},
                      {"connection", "c" + std::to_string(r.id)},
                      {"outcome", outcome},
                      {"direction", r.direction},
                      {"reporter", l.reporter},
                      {"srcAddr", to_string(r.source)},
                      {"srcWorkload", l.source_workload},
                      {"srcNamespace", l.source_workload_namespace},
                      {"srcIdentity", l.source_principal},
                      {"dstAddr", to_string(r.destination)},
                      {"dstWorkload", l.destination_workload},
                      {"dstNamespace", l.destination_workload_namespace},
                      {"dstIdentity", l.destination_principal},
                      {"service", l.destination_service},
                      {"securityPolicy", l.connection_security_policy},
                      {"requestBytes", r.request_bytes},
                      {"responseBytes", r.response_bytes},
                      {"durationMs", duration},
                      {"responseFlags", l.response_flags},
                      {"path", r.path},
                      {"error", r.error}};
  return json_text(j);
}

std::string Telemetry::prometheus_text() const {
  struct Family {
    const char* name;
    const char* help;
    uint64_t Counters::*field;
  };
  const Family families[] = {
      {"istio_tcp_connections_opened_total", "TCP connections opened (Istio).", &Counters::opened},
      {"istio_tcp_connections_closed_total", "TCP connections closed (Istio).", &Counters::closed},
      {"istio_tcp_received_bytes_total", "Bytes from client to server on closed connections (Istio).",
       &Counters::received},
      {"istio_tcp_sent_bytes_total", "Bytes from server to client on closed connections (Istio).", &Counters::sent},
      {"istio_tcp_connections_failed_total", "TCP connections that failed before carrying data (denied, refused, "
                                             "unreachable).",
       &Counters::failed},
  };
  std::ostringstream out;
  std::lock_guard lock(mutex_);
  for (const auto& f : families) {
    out << "# HELP " << f.name << ' ' << f.help << "\n# TYPE " << f.name << " counter\n";
    for (const auto& [labels, counters] : series_) out << f.name << labels_text(labels) << ' ' << counters.*f.field << '\n';
  }
  return out.str();
}

}  // namespace zmesh
