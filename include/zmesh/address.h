// Addresses as zmesh compares and prints them: IPv4-mapped IPv6 (what dual-stack sockets
// report for IPv4 peers) folded into IPv4, and "ip:port" / "[ip6]:port" text.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <string>

namespace zmesh {

inline boost::asio::ip::address unmapped(const boost::asio::ip::address& ip) {
  if (ip.is_v6() && ip.to_v6().is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, ip.to_v6());
  return ip;
}

inline boost::asio::ip::tcp::endpoint unmapped(const boost::asio::ip::tcp::endpoint& ep) {
  return {unmapped(ep.address()), ep.port()};
}

inline std::string to_string(const boost::asio::ip::tcp::endpoint& ep) {
  const auto ip = unmapped(ep.address());
  return ip.is_v6() ? "[" + ip.to_string() + "]:" + std::to_string(ep.port())
                    : ip.to_string() + ":" + std::to_string(ep.port());
}

}  // namespace zmesh
