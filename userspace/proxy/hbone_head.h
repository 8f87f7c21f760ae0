// The parts of an HBONE CONNECT that a peer controls and the proxy parses: the :authority
// ("10.1.2.3:80", "[fd00::1]:80") and the `forwarded: for=` header. Separate from the proxy so
// that a fuzzer drives exactly this code (fuzz/hbone_head_fuzz.cpp).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <optional>
#include <string>

namespace zmesh::hbone {

// The target of a CONNECT, IPv4-mapped addresses as IPv4; nullopt when malformed (no port,
// port 0 or > 65535, not an IP).
std::optional<boost::asio::ip::tcp::endpoint> parse_authority(const std::string& authority);
// The client's address from `for="10.244.1.2"` (or `for="[fd00::2]"`), else `fallback`.
boost::asio::ip::address forwarded_for(const std::string& header, const boost::asio::ip::address& fallback);

}  // namespace zmesh::hbone
