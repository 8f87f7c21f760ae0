// Istio labels and connection reports (see labels.h).
#include "labels.h"

namespace zmesh::proxy {

std::string service_hostname(const Service& service) {
  return service.config.hostname.empty() ? service.config.name + "." + service.config.namespace_
                                         : service.config.hostname;
}

std::string workload_label(const Workload& w) {
  return w.config.workload_name.empty() ? w.config.name : w.config.workload_name;
}

namespace {

// What Istio says of a workload, as ztunnel fills it: the canonical service and revision from
// its labels (istiod's canonical_name/revision; without them, Istio's defaults: the workload's
// name and "latest"), app and version the same, and its cluster.
struct Canonical {
  std::string service, revision, cluster;
};
Canonical canonical(const Workload& w) {
  return {w.config.canonical_name.empty() ? workload_label(w) : w.config.canonical_name,
          w.config.canonical_revision.empty() ? "latest" : w.config.canonical_revision,
          w.config.cluster_id.empty() ? "unknown" : w.config.cluster_id};
}

}  // namespace

ConnectionLabels istio_labels(const char* reporter, const Workload* source, const std::optional<SpiffeId>& principal,
                              const Workload& destination, const Service* service, const Mesh& mesh, uint16_t port,
                              const char* security) {
  ConnectionLabels l;
  l.reporter = reporter;
  if (source) {
    const Canonical c = canonical(*source);
    l.source_workload = workload_label(*source);
    l.source_workload_namespace = source->config.namespace_;
    l.source_canonical_service = l.source_app = c.service;
    l.source_canonical_revision = l.source_version = c.revision;
    l.source_cluster = c.cluster;
  } else if (principal) {
    l.source_workload_namespace = principal->namespace_;
  }
  if (principal) l.source_principal = principal->uri();
  const Canonical d = canonical(destination);
  l.destination_workload = workload_label(destination);
  l.destination_workload_namespace = destination.config.namespace_;
  l.destination_canonical_service = l.destination_app = d.service;
  l.destination_canonical_revision = l.destination_version = d.revision;
  l.destination_cluster = d.cluster;
  if (!destination.identity.namespace_.empty()) l.destination_principal = destination.identity.uri();
  if (!service) service = mesh.service_for(destination, port);
  if (service) {
    l.destination_service = service_hostname(*service);
    l.destination_service_name = service->config.name;
    l.destination_service_namespace = service->config.namespace_;
  }
  l.connection_security_policy = security;
  return l;
}

void report(Telemetry& telemetry, const ConnectionRecord& record, Outcome outcome, bool also_as_destination) {
  auto one = [&](const ConnectionRecord& r) {
    switch (outcome) {
      case Outcome::Opened: telemetry.opened(r.labels); break;
      case Outcome::Closed: telemetry.closed(r); break;
      case Outcome::Failed: telemetry.failed(r); break;
    }
  };
  one(record);
  if (!also_as_destination) return;
  ConnectionRecord inbound = record;
  inbound.direction = "inbound";
  inbound.labels.reporter = "destination";
  one(inbound);
}

ConnectionRecord new_record(uint64_t id, Direction direction, const boost::asio::ip::tcp::endpoint& source,
                            const boost::asio::ip::tcp::endpoint& destination) {
  ConnectionRecord record;
  record.id = id;
  record.direction = direction == Direction::Outbound ? "outbound" : "inbound";
  record.labels.reporter = direction == Direction::Outbound ? "source" : "destination";
  record.source = source;
  record.destination = destination;
  return record;
}

}  // namespace zmesh::proxy
