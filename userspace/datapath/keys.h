// Conversions between Boost.Asio addresses and the kernel's keys (bpf/zmesh_maps.h), folding
// IPv4-mapped IPv6 into IPv4 exactly as bpf/lib/addr.h does, so both sides key alike.
#pragma once

#include <arpa/inet.h>

#include <cstring>
#include <optional>

#include "zmesh/address.h"
#include "zmesh/datapath.h"

namespace zmesh::datapath {

// Writes ip into `out`; returns its family (ZM_AF_INET/ZM_AF_INET6).
inline uint8_t to_zm_ip(const IpAddress& any, zm_ip& out) {
  const IpAddress ip = unmapped(any);
  std::memset(&out, 0, sizeof out);
  if (ip.is_v4()) {
    auto bytes = ip.to_v4().to_bytes();
    std::memcpy(&out.v4, bytes.data(), bytes.size());
    return ZM_AF_INET;
  }
  auto bytes = ip.to_v6().to_bytes();
  std::memcpy(out.v6, bytes.data(), bytes.size());
  return ZM_AF_INET6;
}

inline IpAddress from_zm_ip(const zm_ip& ip, uint8_t family) {
  if (family == ZM_AF_INET) {
    boost::asio::ip::address_v4::bytes_type bytes;
    std::memcpy(bytes.data(), &ip.v4, bytes.size());
    return boost::asio::ip::address_v4(bytes);
  }
  boost::asio::ip::address_v6::bytes_type bytes;
  std::memcpy(bytes.data(), ip.v6, bytes.size());
  return boost::asio::ip::address_v6(bytes);
}

inline zm_ip_key ip_key(const IpAddress& ip) {
  zm_ip_key key{};
  key.family = to_zm_ip(ip, key.addr);
  return key;
}

// The tuple sockops stored for the pod's socket: local = the pod (the accepted socket's
// peer), remote = the listener.
inline zm_tuple pod_tuple(const TcpEndpoint& peer, const TcpEndpoint& local) {
  zm_tuple t{};
  t.family = to_zm_ip(peer.address(), t.local);
  to_zm_ip(local.address(), t.remote);
  t.local_port = htons(peer.port());
  t.remote_port = htons(local.port());
  return t;
}

inline TcpEndpoint endpoint(const zm_orig& orig) {
  return {from_zm_ip(orig.addr, orig.family), ntohs(orig.port)};
}

}  // namespace zmesh::datapath
