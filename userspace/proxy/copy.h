// Relays (ztunnel's copy.rs): the bytes of one connection, both directions at once, between
// two TCP sockets or a TCP socket and an HBONE stream, half-closes and resets carried across;
// and the buffers they borrow while bytes are in flight.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "net.h"
#include "zmesh/http2.h"

namespace zmesh::proxy {

struct RelayResult {
  uint64_t sent = 0;      // from the local socket to the other side
  uint64_t received = 0;  // to the local socket
  std::string error;      // empty when both directions ended cleanly
};

// Until both directions end (each FIN passed on as a half-close) or one fails (then both
// sockets are reset). `a` is the local application's side: `sent` counts a -> b. A clean end
// disarms the sockets' reset-on-close (net.h). With `splice`, the kernel moves the bytes
// (splice(2) through a pipe); without, they are copied through a buffer: a socket in the
// sockhash (--sockmap on) keeps its bytes where splice does not look.
awaitable<RelayResult> relay(tcp::socket& a, tcp::socket& b, bool splice = true);
// TCP socket <-> HBONE stream: an error resets the stream (CONNECT_ERROR) and the socket.
awaitable<RelayResult> relay(tcp::socket& socket, const std::shared_ptr<http2::Stream>& stream);

}  // namespace zmesh::proxy
