// sock_diag (NETLINK_SOCK_DIAG) requests for one TCP socket, named by its own two ends: how
// the admin API learns who owns a loopback peer, and how the fast path destroys a revoked
// connection's socket in its pod.
#pragma once

#include <linux/inet_diag.h>
#include <linux/netlink.h>

#include <boost/asio/ip/tcp.hpp>
#include <cstdint>

namespace zmesh {

struct SockDiagRequest {
  nlmsghdr header;
  inet_diag_req_v2 request;
};

// The exact-match request for the TCP socket whose local end is `local` and remote end
// `remote` (IPv4-mapped addresses as IPv4, as the kernel keys them), bound to interface
// `ifindex` (0: to none). `type`: SOCK_DIAG_BY_FAMILY (read it) or SOCK_DESTROY (close it);
// `flags`: NLM_F_REQUEST and more.
SockDiagRequest sock_diag_request(uint16_t type, uint16_t flags, const boost::asio::ip::tcp::endpoint& local,
                                  const boost::asio::ip::tcp::endpoint& remote, unsigned ifindex = 0);

}  // namespace zmesh
