// sock_diag requests (see zmesh/sock_diag.h).
#include "zmesh/sock_diag.h"

#include <linux/sock_diag.h>
#include <netinet/in.h>

#include <cstring>

#include "zmesh/address.h"

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

SockDiagRequest sock_diag_request(uint16_t type, uint16_t flags, const boost::asio::ip::tcp::endpoint& local,
                                  const boost::asio::ip::tcp::endpoint& remote, unsigned ifindex) {
  SockDiagRequest message{};
  message.header.nlmsg_len = sizeof message;
  message.header.nlmsg_type = type;
  message.header.nlmsg_flags = flags;
  message.header.nlmsg_seq = 1;
  inet_diag_req_v2& r = message.request;
  const auto from = unmapped(local.address()), to = unmapped(remote.address());
  r.sdiag_family = static_cast<uint8_t>(from.is_v4() ? AF_INET : AF_INET6);
  r.sdiag_protocol = IPPROTO_TCP;
  r.idiag_states = ~0u;
  r.id.idiag_sport = htons(local.port());
  r.id.idiag_dport = htons(remote.port());
  put(from, r.id.idiag_src);
  put(to, r.id.idiag_dst);
  r.id.idiag_if = ifindex;
  r.id.idiag_cookie[0] = r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  return message;
}

}  // namespace zmesh
