// rtnetlink link events (see link_watch.h).
#include "link_watch.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace zmesh {

LinkWatch::LinkWatch(boost::asio::io_context& io, Callback added, Callback removed)
    : socket_(io), added_(std::move(added)), removed_(std::move(removed)) {
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) throw std::runtime_error(std::string("watch interfaces: netlink socket: ") + std::strerror(errno));
  socket_.assign(fd);
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  local.nl_groups = RTMGRP_LINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0)
    throw std::runtime_error(std::string("watch interfaces: bind to RTMGRP_LINK: ") + std::strerror(errno));
}

void LinkWatch::start() { wait(); }

void LinkWatch::wait() {
  socket_.async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec) return;
    read_all();
    wait();
  });
}

void LinkWatch::read_all() {
  alignas(nlmsghdr) char buf[32768];
  for (;;) {
    const ssize_t n = recv(socket_.native_handle(), buf, sizeof buf, 0);
    if (n < 0) {
      // ENOBUFS: events were lost (a burst of links). Callers rescan on their own timer.
      if (errno == ENOBUFS) spdlog::warn("interfaces: netlink events lost (ENOBUFS); the next rescan catches up");
      return;
    }
    int len = static_cast<int>(n);
    for (auto* msg = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(msg, static_cast<unsigned>(len));
         msg = NLMSG_NEXT(msg, len)) {
      if (msg->nlmsg_type != RTM_NEWLINK && msg->nlmsg_type != RTM_DELLINK) continue;
      auto* info = static_cast<ifinfomsg*>(NLMSG_DATA(msg));
      int attr_len = static_cast<int>(IFLA_PAYLOAD(msg));
      std::string name;
      for (auto* attr = IFLA_RTA(info); RTA_OK(attr, attr_len); attr = RTA_NEXT(attr, attr_len))
        if (attr->rta_type == IFLA_IFNAME)
          name.assign(static_cast<const char*>(RTA_DATA(attr)), strnlen(static_cast<const char*>(RTA_DATA(attr)), RTA_PAYLOAD(attr)));
      if (name.empty()) continue;
      try {
        (msg->nlmsg_type == RTM_NEWLINK ? added_ : removed_)(name);
      } catch (const std::exception& e) {
        spdlog::error("interfaces: {} {}: {}", msg->nlmsg_type == RTM_NEWLINK ? "hooking" : "unhooking", name, e.what());
      }
    }
  }
}

}  // namespace zmesh
