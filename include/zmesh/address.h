// Addresses as zmesh compares and prints them: IPv4-mapped IPv6 (what dual-stack sockets
// report for IPv4 peers) folded into IPv4, and "ip:port" / "[ip6]:port" text.
#pragma once

#include <algorithm>
#include <array>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
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

// An address range: a CIDR ("10.244.0.0/16"; a bare address is a /32 or /128). Pod CIDRs, the
// kernel's deny rules and policies' ipBlocks are all this.
struct IpBlock {
  boost::asio::ip::address address;
  uint8_t prefix = 0;
  // Whether `ip` lies in the block (an IPv4 block never holds an IPv6 address).
  bool contains(const boost::asio::ip::address& ip) const;
  std::string to_string() const { return address.to_string() + "/" + std::to_string(prefix); }
  bool operator==(const IpBlock& other) const { return address == other.address && prefix == other.prefix; }
  bool operator<(const IpBlock& other) const {
    return address < other.address || (address == other.address && prefix < other.prefix);
  }
};

inline bool IpBlock::contains(const boost::asio::ip::address& ip) const {
  if (ip.is_v4() != address.is_v4()) return false;
  const auto bytes = [](const boost::asio::ip::address& x) {
    std::array<uint8_t, 16> out{};
    if (x.is_v4()) {
      const auto b = x.to_v4().to_bytes();
      std::copy(b.begin(), b.end(), out.begin());
    } else {
      const auto b = x.to_v6().to_bytes();
      std::copy(b.begin(), b.end(), out.begin());
    }
    return out;
  };
  const auto a = bytes(ip), b = bytes(address);
  for (unsigned bit = 0; bit < prefix; ++bit) {
    const auto mask = static_cast<uint8_t>(0x80u >> (bit % 8));
    if ((a[bit / 8] & mask) != (b[bit / 8] & mask)) return false;
  }
  return true;
}

inline std::string to_string(const boost::asio::ip::tcp::endpoint& ep) {
  const auto ip = unmapped(ep.address());
  return ip.is_v6() ? "[" + ip.to_string() + "]:" + std::to_string(ep.port())
                    : ip.to_string() + ":" + std::to_string(ep.port());
}

}  // namespace zmesh
