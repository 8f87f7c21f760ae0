// How the proxy reports a connection in Istio's terms: the label set of the istio_tcp_* series
// (source/destination workload, namespace, principal, service, security policy), and one
// place that records a connection opened, closed or failed — as the source, and also as the
// destination when both ends are on this node (two ztunnels would each report their side).
#pragma once

#include <optional>
#include <string>

#include "zmesh/identity.h"
#include "zmesh/mesh.h"
#include "zmesh/telemetry.h"

namespace zmesh::proxy {

// A service's name in Istio's labels: its hostname, else name.namespace.
std::string service_hostname(const Service& service);
// A workload's name in Istio's labels (source_workload, destination_workload): its owner's
// (a Deployment's) name when istiod gave one, else its own.
std::string workload_label(const Workload& workload);

// Istio's labels for a connection from `source` (with identity `principal`, if any) to
// `destination`, reached through `service` (else the service of `destination` on `port`).
ConnectionLabels istio_labels(const char* reporter, const Workload* source, const std::optional<SpiffeId>& principal,
                              const Workload& destination, const Service* service, const Mesh& mesh, uint16_t port,
                              const char* security);

// A connection's record as a listener starts it: outbound ones are reported by the source's
// side, inbound ones by the destination's.
enum class Direction { Outbound, Inbound };
ConnectionRecord new_record(uint64_t id, Direction direction, const boost::asio::ip::tcp::endpoint& source,
                            const boost::asio::ip::tcp::endpoint& destination = {});

enum class Outcome { Opened, Closed, Failed };
// Records `record` (its labels for Opened) as its reporter sees it, and with `also_as_destination`
// again as the destination's reporter.
void report(Telemetry& telemetry, const ConnectionRecord& record, Outcome outcome, bool also_as_destination = false);

}  // namespace zmesh::proxy
