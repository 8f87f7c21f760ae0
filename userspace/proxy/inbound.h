// Inbound HBONE (ztunnel's inbound.rs): the transparent :15008 listener the tc program assigns
// other nodes' connections to. It answers the TLS handshake with the certificate of the pod the
// client dialled, verifies the client's SPIFFE identity, and serves CONNECT streams: each is
// authorized on this node and relayed to the local pod, or answered 400/401/503.
#pragma once

#include <memory>
#include <set>

#include "context.h"
#include "zmesh/http2.h"

namespace zmesh::proxy {

class InboundHbone : public std::enable_shared_from_this<InboundHbone> {
 public:
  explicit InboundHbone(ProxyContext& context) : ctx_(context) {}

  awaitable<void> serve(tcp::socket socket, uint64_t id);

  void drain();    // GOAWAY on every served connection
  void close();    // now
  size_t retire(); // GOAWAY after a CA rotation; how many
  size_t served() const { return served_.size(); }

 private:
  awaitable<void> request(std::shared_ptr<http2::Stream> stream, uint64_t conn_id, tcp::endpoint peer, SpiffeId client,
                          SpiffeId server);

  ProxyContext& ctx_;
  std::set<std::shared_ptr<http2::Connection>> served_;  // HBONE connections other nodes opened
};

}  // namespace zmesh::proxy
