// Who is on the other end of a loopback TCP connection: the uid that owns the peer's socket,
// asked of the kernel with one sock_diag (inet_diag) lookup of the exact 4-tuple. The admin
// listener uses it to keep the endpoints that change the daemon for root (a kubelet's preStop
// hook runs as root) while any local user may read.
#pragma once

#include <sys/types.h>

#include <boost/asio/ip/tcp.hpp>
#include <optional>

namespace zmesh {

// The uid owning the socket at `peer` connected to `local`, both in the caller's netns;
// nullopt when the kernel does not know it (the peer is gone, or not on this host).
std::optional<uid_t> loopback_peer_uid(const boost::asio::ip::tcp::endpoint& peer,
                                       const boost::asio::ip::tcp::endpoint& local);

}  // namespace zmesh
