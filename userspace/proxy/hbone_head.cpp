// HBONE request head parsing (see hbone_head.h).
#include "hbone_head.h"

#include "zmesh/address.h"

#include <algorithm>
#include <cctype>

namespace zmesh::hbone {

namespace {

// RFC 7230 tchar: the characters of a token.
bool tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

[[noreturn]] void malformed(const std::string& why) { throw std::invalid_argument("forwarded header: " + why); }

// Reads the header one pair at a time: `token "=" (token / quoted-string)`, pairs separated by
// ';', elements by ',', optional whitespace around separators.
class Reader {
 public:
  explicit Reader(std::string_view text) : text_(text) {}
  void skip_space() {
    while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\t')) ++at_;
  }
  bool done() const { return at_ >= text_.size(); }
  char peek() const { return text_[at_]; }
  void take(char c) {
    if (done() || text_[at_] != c) malformed(std::string("expected '") + c + "' at offset " + std::to_string(at_));
    ++at_;
  }
  std::string token() {
    const size_t start = at_;
    while (at_ < text_.size() && tchar(text_[at_])) ++at_;
    if (at_ == start) malformed("expected a token at offset " + std::to_string(start));
    return std::string(text_.substr(start, at_ - start));
  }
  std::string value() {
    if (done() || text_[at_] != '"') return token();
    ++at_;
    std::string out;
    while (at_ < text_.size() && text_[at_] != '"') {
      char c = text_[at_++];
      if (c == '\\') {
        if (at_ >= text_.size()) break;
        c = text_[at_++];
      }
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t') malformed("a control character in a quoted string");
      out += c;
    }
    take('"');
    return out;
  }

 private:
  std::string_view text_;
  size_t at_ = 0;
};

// RFC 7239 section 6: node = nodename [ ":" node-port ]; nodename = IPv4address /
// "[" IPv6address "]" / "unknown" / obfnode. Only an address is an address.
std::optional<boost::asio::ip::address> node_address(const std::string& node) {
  std::string host = node;
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string::npos) malformed("'" + node + "': '[' without ']'");
    host = host.substr(1, close - 1);
  } else if (std::count(host.begin(), host.end(), ':') == 1) {
    host = host.substr(0, host.find(':'));  // IPv4:port
  }  // else an IPv6 literal without brackets: not RFC 7239, but unambiguous, and peers send it
  if (host == "unknown" || (!host.empty() && host.front() == '_')) return std::nullopt;  // not given / obfuscated
  boost::system::error_code ec;
  const auto ip = boost::asio::ip::make_address(host, ec);
  if (ec) malformed("for=" + node + " is not an address, \"unknown\" or an obfuscated identifier");
  return ip;
}

}  // namespace

std::optional<boost::asio::ip::address> forwarded_for(std::string_view header) {
  Reader in(header);
  std::optional<std::string> node;
  in.skip_space();
  // The first element only: later ones were added by proxies nearer to us.
  while (!in.done() && in.peek() != ',') {
    std::string name = in.token();
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    in.take('=');
    std::string value = in.value();
    if (name == "for") {
      if (node) malformed("two for= parameters in one element");
      node = std::move(value);
    }
    in.skip_space();
    if (in.done() || in.peek() == ',') break;
    in.take(';');
    in.skip_space();
  }
  if (!node) return std::nullopt;
  auto ip = node_address(*node);
  if (ip) ip = unmapped(*ip);
  return ip;
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
