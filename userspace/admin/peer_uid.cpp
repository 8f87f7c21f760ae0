// sock_diag lookup of a peer socket's owner (see peer_uid.h).
#include "peer_uid.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>


#include "zmesh/sock_diag.h"

namespace zmesh {

std::optional<uid_t> loopback_peer_uid(const boost::asio::ip::tcp::endpoint& peer,
                                       const boost::asio::ip::tcp::endpoint& local) {
  const int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return std::nullopt;
  // The peer's socket: its local end is our peer, its remote end is us.
  const SockDiagRequest message = sock_diag_request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, peer, local);
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
