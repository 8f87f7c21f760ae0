#include "netlink.h"

#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "fd.h"
#include "zmesh/datapath_error.h"

namespace zmesh::datapath {
namespace {

// One rtnetlink request: header, family header, then attributes.
class Request {
 public:
  Request(uint16_t type, uint16_t flags) {
    buf_.resize(NLMSG_HDRLEN);
    header()->nlmsg_type = type;
    header()->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
    header()->nlmsg_seq = 1;
  }
  template <typename T>
  void body(const T& value) {
    append(&value, sizeof value);
  }
  void attr_u32(uint16_t type, uint32_t value) {
    rtattr attr{static_cast<unsigned short>(RTA_LENGTH(sizeof value)), type};
    append(&attr, sizeof attr);
    append(&value, sizeof value);
  }
  // Sends and waits for the ACK; returns 0 or a positive errno.
  int send() {
    header()->nlmsg_len = static_cast<uint32_t>(buf_.size());
    UniqueFd fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    if (!fd) return errno;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (sendto(fd.get(), buf_.data(), buf_.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
      return errno;
    char reply[8192];
    ssize_t n = recv(fd.get(), reply, sizeof reply, 0);
    if (n < 0) return errno;
    auto* msg = reinterpret_cast<nlmsghdr*>(reply);
    if (!NLMSG_OK(msg, static_cast<unsigned>(n)) || msg->nlmsg_type != NLMSG_ERROR) return EPROTO;
    return -static_cast<nlmsgerr*>(NLMSG_DATA(msg))->error;
  }

 private:
  nlmsghdr* header() { return reinterpret_cast<nlmsghdr*>(buf_.data()); }
  void append(const void* data, size_t size) {
    const auto* bytes = static_cast<const uint8_t*>(data);
    buf_.insert(buf_.end(), bytes, bytes + size);
    buf_.resize(NLMSG_ALIGN(buf_.size()), 0);
  }
  std::vector<uint8_t> buf_;
};

int rule(uint16_t type, uint16_t flags, uint8_t family, const LocalDeliveryRoute& route) {
  Request req(type, flags);
  fib_rule_hdr hdr{};
  hdr.family = family;
  hdr.action = FR_ACT_TO_TBL;
  req.body(hdr);
  req.attr_u32(FRA_FWMARK, route.mark);
  req.attr_u32(FRA_FWMASK, 0xffffffff);
  req.attr_u32(FRA_TABLE, route.table);
  req.attr_u32(FRA_PRIORITY, route.priority);
  return req.send();
}

int local_route(uint16_t type, uint16_t flags, uint8_t family, const LocalDeliveryRoute& route) {
  Request req(type, flags);
  rtmsg msg{};
  msg.rtm_family = family;
  msg.rtm_table = RT_TABLE_UNSPEC;  // the real (32-bit) table is RTA_TABLE
  msg.rtm_protocol = RTPROT_STATIC;
  msg.rtm_scope = RT_SCOPE_HOST;
  msg.rtm_type = RTN_LOCAL;
  req.body(msg);
  req.attr_u32(RTA_TABLE, route.table);
  req.attr_u32(RTA_OIF, if_nametoindex("lo"));
  return req.send();
}

std::string describe(const char* what, uint8_t family, const LocalDeliveryRoute& route) {
  return std::string(what) + (family == AF_INET ? " (IPv4)" : " (IPv6)") + " for fwmark " +
         std::to_string(route.mark) + " table " + std::to_string(route.table);
}

}  // namespace

void add_local_delivery(const LocalDeliveryRoute& route) {
  for (uint8_t family : {AF_INET, AF_INET6}) {
    if (int err = local_route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, family, route); err && err != EEXIST)
      throw DatapathError(describe("add local route", family, route), err);
    if (int err = rule(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, family, route); err && err != EEXIST)
      throw DatapathError(describe("add ip rule", family, route), err);
  }
}

void remove_local_delivery(const LocalDeliveryRoute& route) {
  for (uint8_t family : {AF_INET, AF_INET6}) {
    if (int err = rule(RTM_DELRULE, 0, family, route); err && err != ENOENT)
      throw DatapathError(describe("delete ip rule", family, route), err);
    if (int err = local_route(RTM_DELROUTE, 0, family, route); err && err != ESRCH && err != ENOENT)
      throw DatapathError(describe("delete local route", family, route), err);
  }
}

}  // namespace zmesh::datapath
