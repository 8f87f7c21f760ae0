#include "fields.h"

#include <algorithm>

#include "zmesh/json.h"

namespace zmesh::config {

void fail(const std::string& path, const std::string& why) { throw ConfigError(path + ": " + why); }

void only_keys(const json& object, const std::string& path, const std::set<std::string>& known) {
  if (!object.is_object()) fail(path, "expected an object");
  for (const auto& [key, value] : object.items())
    if (!known.contains(key)) fail(path + "." + key, "unknown field");
}

std::string string_field(const json& object, const std::string& path, const char* key, bool required) {
  if (!object.contains(key)) {
    if (required) fail(path + "." + key, "missing");
    return {};
  }
  const auto& value = object.at(key);
  if (!value.is_string()) fail(path + "." + key, "expected a string");
  return value.get<std::string>();
}

bool bool_field(const json& object, const std::string& path, const char* key) {
  if (!object.contains(key)) return false;
  if (!object.at(key).is_boolean()) fail(path + "." + key, "expected true or false");
  return object.at(key).get<bool>();
}

bool dns_label(std::string_view s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  const auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '-'; });
}

bool dns_subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (size_t start = 0;;) {
    const size_t dot = s.find('.', start);
    if (!dns_label(s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start))) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

std::string name_field(const json& object, const std::string& path, const char* key, bool required, NameKind kind) {
  std::string value = string_field(object, path, key, required);
  if (value.empty() && !required) return value;
  const bool ok = kind == NameKind::Label ? dns_label(value) : dns_subdomain(value);
  if (!ok)
    fail(path + "." + key, "'" + printable(value) + "' is not a Kubernetes name (" +
                               (kind == NameKind::Label ? "a DNS-1123 label: up to 63 of a-z, 0-9 and '-'"
                                                        : "a DNS-1123 subdomain: up to 253 of a-z, 0-9, '-' and '.'") +
                               ", starting and ending with a letter or digit)");
  return value;
}

std::vector<boost::asio::ip::address> ip_list(const json& object, const std::string& path, const char* key) {
  std::vector<boost::asio::ip::address> out;
  if (!object.contains(key)) return out;
  const auto& list = object.at(key);
  const std::string here = path + "." + key;
  if (!list.is_array()) fail(here, "expected a list of IP addresses");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string item = here + "[" + std::to_string(i) + "]";
    if (!list[i].is_string()) fail(item, "expected an IP address string");
    boost::system::error_code ec;
    auto ip = boost::asio::ip::make_address(list[i].get<std::string>(), ec);
    if (ec) fail(item, "'" + list[i].get<std::string>() + "' is not an IP address");
    out.push_back(ip);
  }
  return out;
}

std::vector<std::string> string_list(const json& object, const std::string& path, const char* key) {
  std::vector<std::string> out;
  if (!object.contains(key)) return out;
  const auto& list = object.at(key);
  const std::string here = path + "." + key;
  if (!list.is_array()) fail(here, "expected a list of strings");
  for (size_t i = 0; i < list.size(); ++i) {
    if (!list[i].is_string()) fail(here, "expected a list of strings");
    if (list[i].get<std::string>().empty()) fail(here + "[" + std::to_string(i) + "]", "must not be an empty string");
    out.push_back(list[i].get<std::string>());
  }
  return out;
}

std::vector<IpBlock> ip_blocks(const json& object, const std::string& path, const char* key) {
  std::vector<IpBlock> out;
  const auto texts = string_list(object, path, key);
  for (size_t i = 0; i < texts.size(); ++i)
    out.push_back(parse_ip_block(texts[i], path + "." + key + "[" + std::to_string(i) + "]"));
  return out;
}

std::vector<uint16_t> port_list(const json& object, const std::string& path, const char* key) {
  std::vector<uint16_t> out;
  if (!object.contains(key)) return out;
  const auto& list = object.at(key);
  const std::string here = path + "." + key;
  if (!list.is_array()) fail(here, "expected a list of ports");
  for (size_t i = 0; i < list.size(); ++i) {
    // Istio writes ports as strings; numbers are accepted too.
    int64_t port = -1;
    if (list[i].is_number_integer()) port = list[i].get<int64_t>();
    else if (list[i].is_string() && !list[i].get<std::string>().empty() &&
             list[i].get<std::string>().find_first_not_of("0123456789") == std::string::npos &&
             list[i].get<std::string>().size() <= 5)
      port = std::stoi(list[i].get<std::string>());
    if (port < 1 || port > 65535) fail(here + "[" + std::to_string(i) + "]", "expected a port 1..65535");
    out.push_back(static_cast<uint16_t>(port));
  }
  return out;
}

std::vector<std::string> ip_texts(const std::vector<boost::asio::ip::address>& ips) {
  std::vector<std::string> out;
  for (const auto& ip : ips) out.push_back(ip.to_string());
  return out;
}

std::vector<std::string> block_texts(const std::vector<IpBlock>& blocks) {
  std::vector<std::string> out;
  for (const auto& b : blocks) out.push_back(b.to_string());
  return out;
}

PortMap port_map(const json& object, const std::string& path, const char* key) {
  PortMap out;
  if (!object.contains(key)) return out;
  const auto& ports = object.at(key);
  const std::string where = path + "." + key;
  if (!ports.is_object()) fail(where, "expected an object of \"servicePort\": targetPort");
  for (const auto& [port, target] : ports.items()) {
    const std::string here = where + "." + printable(port);
    const bool port_ok = !port.empty() && port.size() <= 5 && port.find_first_not_of("0123456789") == std::string::npos &&
                         std::stoi(port) >= 1 && std::stoi(port) <= 65535;
    if (!port_ok) fail(here, "the service port must be 1..65535");
    if (!target.is_number_integer() || target.get<int64_t>() < 1 || target.get<int64_t>() > 65535)
      fail(here, "the target port must be a number 1..65535");
    out[static_cast<uint16_t>(std::stoi(port))] = static_cast<uint16_t>(target.get<int>());
  }
  return out;
}

json port_map_json(const PortMap& ports) {
  json out = json::object();
  for (const auto& [port, target] : ports) out[std::to_string(port)] = target;
  return out;
}

std::string text_field(const json& object, const std::string& path, const char* key) {
  std::string value = string_field(object, path, key, false);
  if (std::any_of(value.begin(), value.end(), [](char c) { return static_cast<unsigned char>(c) < ' ' || c == 0x7f; }))
    fail(path + "." + key, "'" + printable(value) + "' contains a control character");
  return value;
}

}  // namespace zmesh::config
