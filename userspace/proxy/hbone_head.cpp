// HBONE request head parsing (see hbone_head.h).
#include "hbone_head.h"

#include "zmesh/address.h"

#include <algorithm>

namespace zmesh::hbone {

// The client's address from a `forwarded: for="10.244.1.2"` header, else `fallback`.
boost::asio::ip::address forwarded_for(const std::string& header, const boost::asio::ip::address& fallback) {
  auto at = header.find("for=");
  if (at == std::string::npos) return fallback;
  std::string value = header.substr(at + 4, header.find(';', at) - at - 4);
  std::erase(value, '"');
  if (!value.empty() && value.front() == '[') value = value.substr(1, value.find(']') - 1);
  boost::system::error_code ec;
  auto ip = boost::asio::ip::make_address(value, ec);
  return ec ? fallback : ip;
}

// "10.1.2.3:80" or "[fd00::1]:80"; nullopt when malformed.
std::optional<boost::asio::ip::tcp::endpoint> parse_authority(const std::string& authority) {
  std::string host;
  std::string port;
  if (!authority.empty() && authority[0] == '[') {
    auto close = authority.find("]:");
    if (close == std::string::npos) return std::nullopt;
    host = authority.substr(1, close - 1);
    port = authority.substr(close + 2);
  } else {
    auto colon = authority.rfind(':');
    if (colon == std::string::npos || authority.find(':') != colon) return std::nullopt;
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  boost::system::error_code ec;
  auto ip = boost::asio::ip::make_address(host, ec);
  if (ec || port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  const int n = std::stoi(port);
  if (n <= 0 || n > 65535) return std::nullopt;
  return boost::asio::ip::tcp::endpoint(unmapped(ip), static_cast<uint16_t>(n));  // ::ffff:a.b.c.d is a.b.c.d
}

}  // namespace zmesh::hbone
