// sock_diag lookup of a peer socket's owner (see peer_uid.h).
#include "peer_uid.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace zmesh {
namespace {

// Copies an address into inet_diag's four 32-bit words (IPv4 in the first).
void put(const boost::asio::ip::address& ip, __be32 (&out)[4]) {
  std::memset(out, 0, sizeof out);
  if (ip.is_v4()) {
    const auto bytes = ip.to_v4().to_bytes();
    std::memcpy(out, bytes.data(), bytes.size());
  } else {
    const auto bytes = ip.to_v6().to_bytes();
    std::memcpy(out, bytes.data(), bytes.size());
  }
}

}  // namespace

std::optional<uid_t> loopback_peer_uid(const boost::asio::ip::tcp::endpoint& peer,
                                       const boost::asio::ip::tcp::endpoint& local) {
  const int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return std::nullopt;
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof message;
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;
  auto& r = message.request;
  r.sdiag_family = static_cast<uint8_t>(peer.address().is_v4() ? AF_INET : AF_INET6);
  r.sdiag_protocol = IPPROTO_TCP;
  r.idiag_states = ~0u;
  // The peer's socket: its local end is our peer, its remote end is us.
  r.id.idiag_sport = htons(peer.port());
  r.id.idiag_dport = htons(local.port());
  put(peer.address(), r.id.idiag_src);
  put(local.address(), r.id.idiag_dst);
  r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  std::optional<uid_t> uid;
  timeval limit{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  if (send(fd, &message, sizeof message, 0) == static_cast<ssize_t>(sizeof message)) {
    alignas(nlmsghdr) char reply[4096];
    const ssize_t n = recv(fd, reply, sizeof reply, 0);
    const auto* h = reinterpret_cast<const nlmsghdr*>(reply);
    if (n > 0 && NLMSG_OK(h, static_cast<unsigned>(n)) && h->nlmsg_type == SOCK_DIAG_BY_FAMILY)
      uid = static_cast<const inet_diag_msg*>(NLMSG_DATA(h))->idiag_uid;
  }
  close(fd);
  return uid;
}

}  // namespace zmesh
