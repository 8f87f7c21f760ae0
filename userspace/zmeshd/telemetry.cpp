#include "telemetry.h"

#include <sstream>

namespace zmesh {
namespace {

struct Metric {
  const char* name;
  const char* type;
  const char* help;
};

void write(std::ostringstream& out, const Metric& m, const std::string& labels, uint64_t value) {
  out << m.name << labels << ' ' << value << '\n';
}
void header(std::ostringstream& out, const Metric& m) {
  out << "# HELP " << m.name << ' ' << m.help << "\n# TYPE " << m.name << ' ' << m.type << '\n';
}

}  // namespace

std::string prometheus_text(const ProxyStats& p, const DatapathCounters& kernel, uint64_t renewals) {
  std::ostringstream out;
  const Metric accepted{"zmesh_connections_accepted_total", "counter", "Connections accepted, by listener."};
  header(out, accepted);
  write(out, accepted, "{listener=\"outbound\"}", p.outbound_accepted);
  write(out, accepted, "{listener=\"hbone\"}", p.inbound_hbone_accepted);
  write(out, accepted, "{listener=\"plaintext\"}", p.inbound_plain_accepted);
  const Metric active{"zmesh_connections_active", "gauge", "Connections being served."};
  header(out, active);
  write(out, active, "", p.active);
  const Metric handshakes{"zmesh_tls_handshakes_total", "counter", "Completed HBONE TLS handshakes, by side."};
  header(out, handshakes);
  write(out, handshakes, "{side=\"client\"}", p.client_handshakes);
  write(out, handshakes, "{side=\"server\"}", p.server_handshakes);
  const Metric failures{"zmesh_tls_handshake_failures_total", "counter", "Failed or rejected TLS handshakes."};
  header(out, failures);
  write(out, failures, "", p.handshake_failures);
  const Metric streams{"zmesh_hbone_streams_opened_total", "counter", "HBONE streams opened on pooled connections."};
  header(out, streams);
  write(out, streams, "", p.streams_opened);
  const Metric refused{"zmesh_connections_refused_total", "counter", "Connections refused by the proxy."};
  header(out, refused);
  write(out, refused, "", p.refused);
  const Metric denials{"zmesh_policy_denials_total", "counter", "Connections denied by authorization, by layer."};
  header(out, denials);
  write(out, denials, "{layer=\"proxy\"}", p.denied);
  write(out, denials, "{layer=\"kernel\"}", kernel.tc_drop_deny);
  const Metric revoked{"zmesh_connections_revoked_total", "counter",
                       "Open connections closed because a policy change denies them."};
  header(out, revoked);
  write(out, revoked, "", p.revoked);
  const Metric renewed{"zmesh_certificate_renewals_total", "counter", "Workload certificates renewed."};
  header(out, renewed);
  write(out, renewed, "", renewals);
  const Metric datapath{"zmesh_datapath_events_total", "counter", "Kernel datapath counters (bpf/zmesh_maps.h)."};
  header(out, datapath);
  for (const auto& [name, value] : named_counters(kernel)) write(out, datapath, std::string("{event=\"") + name + "\"}", value);
  return out.str();
}

nlohmann::json stats_json(const ProxyStats& p, const DatapathCounters& kernel, uint64_t renewals) {
  nlohmann::json k = nlohmann::json::object();
  for (const auto& [name, value] : named_counters(kernel)) k[name] = value;
  return {{"proxy",
           {{"outboundAccepted", p.outbound_accepted},
            {"hboneAccepted", p.inbound_hbone_accepted},
            {"plaintextAccepted", p.inbound_plain_accepted},
            {"clientHandshakes", p.client_handshakes},
            {"serverHandshakes", p.server_handshakes},
            {"handshakeFailures", p.handshake_failures},
            {"streamsOpened", p.streams_opened},
            {"refused", p.refused},
            {"denied", p.denied},
            {"revoked", p.revoked},
            {"active", p.active}}},
          {"certificateRenewals", renewals},
          {"kernel", k}};
}

}  // namespace zmesh
