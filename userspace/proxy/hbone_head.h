// The parts of an HBONE CONNECT that a peer controls and the proxy parses: the :authority
// ("10.1.2.3:80", "[fd00::1]:80") and the `forwarded` header (RFC 7239). Separate from the
// proxy so that a fuzzer drives exactly this code (fuzz/hbone_head_fuzz.cpp).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace zmesh::hbone {

// The target of a CONNECT, IPv4-mapped addresses as IPv4; nullopt when malformed (no port,
// port 0 or > 65535, not an IP).
std::optional<boost::asio::ip::tcp::endpoint> parse_authority(const std::string& authority);

// The client's address from a `forwarded` header, parsed per RFC 7239: the `for` parameter of
// its first element (the one nearest the client), an IPv4 address or a quoted "[IPv6]", with
// an optional port. nullopt when the header is empty or its first element names no address
// ("unknown", an obfuscated identifier, or no `for`). Throws std::invalid_argument, with
// why, when the header is not RFC 7239 (a peer that sends that is broken or probing).
std::optional<boost::asio::ip::address> forwarded_for(std::string_view header);

}  // namespace zmesh::hbone
