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
};

// Why a TLS handshake failed, for zmesh_tls_handshake_failures_total{reason}.
HandshakeFailure handshake_failure(const error_code& ec, SSL* ssl);
// After a failed handshake: why the peer's certificate was rejected, if it was (" (peer
// certificate: certificate has expired)"); empty otherwise.
std::string verification_failure(SSL* ssl);

}  // namespace zmesh::proxy
