// What every handler of the proxy reads and counts. Each handler (outbound, inbound HBONE,
// inbound plaintext, the pool) takes this and the few parts of its own by reference; none sees
// the others.
#pragma once

#include <openssl/ssl.h>

#include "connection_manager.h"
#include "zmesh/certificates.h"
#include "zmesh/proxy.h"
#include "zmesh/telemetry.h"

namespace zmesh::proxy {

struct ProxyContext {
  asio::io_context& io;
  const MeshState& state;  // read per connection: a new snapshot applies to new connections
  Certificates& certs;
  Telemetry& telemetry;
  const ProxyOptions& options;
  ProxyStats& stats;  // the counters; Proxy::stats() adds the gauges
  ConnectionManager& connections;

  void handshake_failed(HandshakeFailure why) {
    ++stats.handshake_failures;
    ++stats.handshake_failures_by_reason[why];
  }

  // Connects to `pod`, a pod of this node, at `target` from `client`'s own address, so the pod
  // sees who called it (docs/datapath.md, "The client's address"); from the node's address
  // when that cannot be (said in the log, under `tag`). Throws what connect throws.
  awaitable<tcp::socket> connect_to_pod(const Workload& pod, const tcp::endpoint& target,
                                        const asio::ip::address& client, const std::string& tag);
};

// Why a connection from `client` to `pod` at `target` cannot carry the client's address (the
// pod's answer would not come back to zmeshd, or not be accepted); nullopt when it can.
std::optional<std::string> source_not_preservable(const asio::ip::address& client, const Workload& pod,
                                                  const tcp::endpoint& target);

// Why a TLS handshake failed, for zmesh_tls_handshake_failures_total{reason}.
HandshakeFailure handshake_failure(const error_code& ec, SSL* ssl);
// After a failed handshake: why the peer's certificate was rejected, if it was (" (peer
// certificate: certificate has expired)"); empty otherwise.
std::string verification_failure(SSL* ssl);

}  // namespace zmesh::proxy
