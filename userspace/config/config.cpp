// The mesh config parser (see include/zmesh/config.h). Every error names the JSON path.
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "zmesh/json.h"
#include "zmesh/config.h"
#include "zmesh/json.h"

namespace zmesh {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& why) { throw ConfigError(path + ": " + why); }

// Rejects keys outside `known`, so that a typo is an error and not a silent default.
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

// Kubernetes' names (k8s.io/apimachinery validation): a DNS-1123 label for namespaces (63
// characters of [a-z0-9-], alphanumeric at both ends), a DNS-1123 subdomain for object names
// (253 characters, labels joined by '.'). Nothing else can name a pod, so nothing else is
// accepted: a '/' would make "namespace/name" keys ambiguous.
bool dns_label(std::string_view s, size_t max = 63) {
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

enum class NameKind { Label, Subdomain };
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

WorkloadConfig workload(const json& j, const std::string& path) {
  only_keys(j, path, {"uid", "name", "namespace", "serviceAccount", "node", "workloadIps", "protocol", "mtlsMode",
                      "cgroup", "hostVeth"});
  WorkloadConfig w;
  w.name = name_field(j, path, "name", true, NameKind::Subdomain);
  w.namespace_ = name_field(j, path, "namespace", true, NameKind::Label);
  w.uid = printable(string_field(j, path, "uid", false));
  if (w.uid.empty()) w.uid = w.namespace_ + "/" + w.name;
  w.service_account = name_field(j, path, "serviceAccount", false, NameKind::Subdomain);
  if (w.service_account.empty()) w.service_account = "default";
  w.node = name_field(j, path, "node", true, NameKind::Subdomain);
  w.ips = ip_list(j, path, "workloadIps");
  const std::string protocol = string_field(j, path, "protocol", false);
  if (!protocol.empty() && protocol != "HBONE" && protocol != "TCP")
    fail(path + ".protocol", "expected \"HBONE\" or \"TCP\", got \"" + protocol + "\"");
  if (protocol == "TCP") w.protocol = TunnelProtocol::Tcp;
  const std::string mtls = string_field(j, path, "mtlsMode", false);
  if (!mtls.empty() && mtls != "STRICT" && mtls != "PERMISSIVE")
    fail(path + ".mtlsMode", "expected \"STRICT\" or \"PERMISSIVE\", got \"" + mtls + "\"");
  w.mtls_strict = mtls != "PERMISSIVE";
  w.cgroup = string_field(j, path, "cgroup", false);
  w.host_veth = string_field(j, path, "hostVeth", false);
  return w;
}

std::vector<std::string> string_list(const json& object, const std::string& path, const char* key);

ServiceConfig service(const json& j, const std::string& path) {
  only_keys(j, path, {"name", "namespace", "hostname", "vips", "ports", "endpoints"});
  ServiceConfig s;
  s.name = name_field(j, path, "name", true, NameKind::Label);
  s.namespace_ = name_field(j, path, "namespace", true, NameKind::Label);
  s.hostname = string_field(j, path, "hostname", false);
  s.vips = ip_list(j, path, "vips");
  if (j.contains("ports")) {
    const auto& ports = j["ports"];
    if (!ports.is_object()) fail(path + ".ports", "expected an object of \"servicePort\": targetPort");
    for (const auto& [key, value] : ports.items()) {
      const std::string here = path + ".ports." + key;
      const bool key_ok = !key.empty() && key.size() <= 5 && key.find_first_not_of("0123456789") == std::string::npos &&
                          std::stoi(key) >= 1 && std::stoi(key) <= 65535;
      if (!key_ok) fail(here, "the service port must be 1..65535");
      if (!value.is_number_integer() || value.get<int64_t>() < 1 || value.get<int64_t>() > 65535)
        fail(here, "the target port must be a number 1..65535");
      s.ports[static_cast<uint16_t>(std::stoi(key))] = static_cast<uint16_t>(value.get<int>());
    }
  }
  s.endpoints = string_list(j, path, "endpoints");
  return s;
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

// Istio's wildcard: the whole value "*", or one '*' leading or ending it.
bool wildcard_ok(std::string_view s) {
  const size_t stars = static_cast<size_t>(std::count(s.begin(), s.end(), '*'));
  return stars == 0 || s == "*" || (stars == 1 && (s.front() == '*' || s.back() == '*'));
}

// Principals as Istio writes them, "<trust-domain>/ns/<namespace>/sa/<account>" with an
// optional wildcard. A value that can never match a peer is a mistake, not a policy: refused
// with why (a principal that matches nothing in an ALLOW would deny; in a DENY, allow).
std::vector<std::string> principals(const json& object, const std::string& path, const char* key) {
  auto list = string_list(object, path, key);
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string& p = list[i];
    const std::string here = path + "." + key + "[" + std::to_string(i) + "]";
    const auto why = [&](const std::string& reason) { fail(here, "'" + printable(p) + "' " + reason); };
    if (p.rfind("spiffe://", 0) == 0)
      why("starts with spiffe://: Istio principals leave it out ('" + printable(p.substr(9)) + "')");
    if (std::any_of(p.begin(), p.end(), [](char c) { return static_cast<unsigned char>(c) <= ' ' || c == 0x7f; }))
      why("contains a space or a control character: no principal has one");
    if (!wildcard_ok(p)) why("has a '*' inside: Istio matches \"*\", \"prefix*\" or \"*suffix\" only");
    if (p.size() > 1 && p.back() == '/') why("ends with '/': no principal does, so it would never match");
    if (p.find("//") != std::string::npos) why("contains '//': no principal does, so it would never match");
    const std::string bare = p == "*" ? "" : p.front() == '*' ? p.substr(1) : p.back() == '*' ? p.substr(0, p.size() - 1) : p;
    if (!std::all_of(bare.begin(), bare.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
                 c == '_' || c == '/';
        }))
      why("has characters no SPIFFE id can (letters, digits, '.', '-', '_' and '/' only)");
  }
  return list;
}

// Namespaces, with Istio's wildcard: Kubernetes namespace names otherwise.
std::vector<std::string> namespaces(const json& object, const std::string& path, const char* key) {
  auto list = string_list(object, path, key);
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string& n = list[i];
    const std::string bare = n == "*" ? "" : n.front() == '*' ? n.substr(1) : n.back() == '*' ? n.substr(0, n.size() - 1) : n;
    const bool ok = wildcard_ok(n) && (bare.empty() || std::all_of(bare.begin(), bare.end(), [](char c) {
                                         return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
                                       }));
    if (!ok)
      fail(path + "." + key + "[" + std::to_string(i) + "]",
           "'" + printable(n) + "' is not a namespace name (a-z, 0-9 and '-'; '*' leading or ending it)");
  }
  return list;
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

AuthorizationPolicy policy(const json& j, const std::string& path) {
  only_keys(j, path, {"name", "namespace", "action", "selector", "rules"});
  AuthorizationPolicy p;
  p.name = name_field(j, path, "name", true, NameKind::Subdomain);
  p.namespace_ = name_field(j, path, "namespace", true, NameKind::Label);
  const std::string action = string_field(j, path, "action", false);
  if (action.empty() || action == "ALLOW") p.action = AuthorizationPolicy::Action::Allow;
  else if (action == "DENY") p.action = AuthorizationPolicy::Action::Deny;
  else fail(path + ".action", "expected \"ALLOW\" or \"DENY\", got \"" + action + "\"");
  if (j.contains("selector")) {
    only_keys(j["selector"], path + ".selector", {"workloads"});
    p.selector = string_list(j["selector"], path + ".selector", "workloads");
    for (size_t i = 0; i < p.selector.size(); ++i)
      if (!dns_subdomain(p.selector[i]))
        fail(path + ".selector.workloads[" + std::to_string(i) + "]",
             "'" + printable(p.selector[i]) + "' is not a workload name (a DNS-1123 subdomain)");
  }
  if (j.contains("rules") && !j["rules"].is_array()) fail(path + ".rules", "expected a list");
  for (size_t r = 0; j.contains("rules") && r < j["rules"].size(); ++r) {
    const std::string rp = path + ".rules[" + std::to_string(r) + "]";
    const json& rule = j["rules"][r];
    only_keys(rule, rp, {"from", "to"});
    PolicyRule out;
    for (const char* key : {"from", "to"})
      if (rule.contains(key) && !rule[key].is_array()) fail(rp + "." + key, "expected a list");
    for (size_t f = 0; rule.contains("from") && f < rule["from"].size(); ++f) {
      const std::string fp = rp + ".from[" + std::to_string(f) + "]";
      only_keys(rule["from"][f], fp, {"source"});
      if (!rule["from"][f].contains("source")) fail(fp + ".source", "missing");
      const json& src = rule["from"][f]["source"];
      const std::string sp = fp + ".source";
      only_keys(src, sp, {"principals", "notPrincipals", "namespaces", "notNamespaces", "ipBlocks", "notIpBlocks"});
      PolicySource source{principals(src, sp, "principals"), principals(src, sp, "notPrincipals"),
                          namespaces(src, sp, "namespaces"), namespaces(src, sp, "notNamespaces"),
                          ip_blocks(src, sp, "ipBlocks"),    ip_blocks(src, sp, "notIpBlocks")};
      // As istiod: an empty list is a field not set, and a source with none set would
      // silently match everything.
      if (source.principals.empty() && source.not_principals.empty() && source.namespaces.empty() &&
          source.not_namespaces.empty() && source.ip_blocks.empty() && source.not_ip_blocks.empty())
        fail(sp, "must not be empty: every field is missing or an empty list, which Istio reads as not set "
                 "(leave out `from` to match every source)");
      out.from.push_back(std::move(source));
    }
    for (size_t t = 0; rule.contains("to") && t < rule["to"].size(); ++t) {
      const std::string tp = rp + ".to[" + std::to_string(t) + "]";
      only_keys(rule["to"][t], tp, {"operation"});
      if (!rule["to"][t].contains("operation")) fail(tp + ".operation", "missing");
      const json& op = rule["to"][t]["operation"];
      const std::string op_path = tp + ".operation";
      only_keys(op, op_path, {"ports", "notPorts"});
      PolicyOperation operation{port_list(op, op_path, "ports"), port_list(op, op_path, "notPorts")};
      if (operation.ports.empty() && operation.not_ports.empty())
        fail(op_path, "must not be empty: every field is missing or an empty list, which Istio reads as not set "
                      "(leave out `to` to match every port)");
      out.to.push_back(std::move(operation));
    }
    p.rules.push_back(std::move(out));
  }
  return p;
}

// Two entries with one namespace/name would make "which one" ambiguous for reloads and the
// control socket.
template <typename T>
void unique_keys(const std::vector<T>& list, const char* what) {
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < list.size(); ++i) {
    auto [it, fresh] = seen.emplace(key_of(list[i]), i);
    if (!fresh)
      fail(std::string(what) + "[" + std::to_string(i) + "]",
           "'" + it->first + "' is already defined at " + what + "[" + std::to_string(it->second) + "]");
  }
}

}  // namespace

IpBlock parse_ip_block(const std::string& text, const std::string& what) {
  const auto slash = text.find('/');
  boost::system::error_code ec;
  IpBlock block;
  block.address = boost::asio::ip::make_address(text.substr(0, slash), ec);
  if (ec) fail(what, "'" + text + "' is not an IP address or CIDR");
  const int max = block.address.is_v4() ? 32 : 128;
  int prefix = max;
  if (slash != std::string::npos) {
    const std::string bits = text.substr(slash + 1);
    if (bits.empty() || bits.size() > 3 || bits.find_first_not_of("0123456789") != std::string::npos ||
        (prefix = std::stoi(bits)) > max)
      fail(what, "'" + text + "' has a bad prefix length");
  }
  if (block.address.is_v6() && block.address.to_v6().is_v4_mapped()) {
    // Sources are compared as IPv4 when IPv4-mapped: so is the block.
    if (prefix < 96) fail(what, "'" + text + "' mixes IPv4-mapped and other IPv6 addresses (prefix < 96)");
    block.address = block.address.to_v6().to_v4();
    prefix -= 96;
  }
  block.prefix = static_cast<uint8_t>(prefix);
  return block;
}

MeshConfig parse_config(const std::string& text) {
  json root;
  try {
    root = parse_json(text);
  } catch (const JsonError& e) {
    throw ConfigError(e.what());
  }
  only_keys(root, "(top level)", {"workloads", "services", "policies"});
  MeshConfig config;
  for (const char* key : {"workloads", "services", "policies"})
    if (root.contains(key) && !root.at(key).is_array()) fail(key, "expected a list");
  if (root.contains("workloads"))
    for (size_t i = 0; i < root["workloads"].size(); ++i)
      config.workloads.push_back(workload(root["workloads"][i], "workloads[" + std::to_string(i) + "]"));
  if (root.contains("services"))
    for (size_t i = 0; i < root["services"].size(); ++i)
      config.services.push_back(service(root["services"][i], "services[" + std::to_string(i) + "]"));
  if (root.contains("policies"))
    for (size_t i = 0; i < root["policies"].size(); ++i)
      config.policies.push_back(policy(root["policies"][i], "policies[" + std::to_string(i) + "]"));
  unique_keys(config.workloads, "workloads");
  unique_keys(config.services, "services");
  unique_keys(config.policies, "policies");
  return config;
}

const char* to_string(TunnelProtocol protocol) { return protocol == TunnelProtocol::Tcp ? "TCP" : "HBONE"; }

WorkloadConfig parse_workload(const json& j, const std::string& path) { return workload(j, path); }
bool is_namespace_name(std::string_view text) { return dns_label(text); }
bool is_object_name(std::string_view text) { return dns_subdomain(text); }
AuthorizationPolicy parse_policy(const json& j, const std::string& path) { return policy(j, path); }

namespace {

std::vector<std::string> ip_texts(const std::vector<boost::asio::ip::address>& ips) {
  std::vector<std::string> out;
  for (const auto& ip : ips) out.push_back(ip.to_string());
  return out;
}

std::vector<std::string> block_texts(const std::vector<IpBlock>& blocks) {
  std::vector<std::string> out;
  for (const auto& b : blocks) out.push_back(b.address.to_string() + "/" + std::to_string(b.prefix));
  return out;
}

// Adds `key: value` only when the list is not empty, as a person would write the file.
template <typename T>
void put_list(json& object, const char* key, const std::vector<T>& values) {
  if (!values.empty()) object[key] = values;
}

}  // namespace

json to_json(const WorkloadConfig& w) {
  json j = {{"uid", w.uid},       {"name", w.name},
            {"namespace", w.namespace_}, {"serviceAccount", w.service_account},
            {"node", w.node},     {"workloadIps", ip_texts(w.ips)},
            {"protocol", to_string(w.protocol)}, {"mtlsMode", w.mtls_strict ? "STRICT" : "PERMISSIVE"}};
  if (!w.cgroup.empty()) j["cgroup"] = w.cgroup;
  if (!w.host_veth.empty()) j["hostVeth"] = w.host_veth;
  return j;
}

json to_json(const ServiceConfig& s) {
  json ports = json::object();
  for (const auto& [service_port, target] : s.ports) ports[std::to_string(service_port)] = target;
  json j = {{"name", s.name}, {"namespace", s.namespace_}, {"vips", ip_texts(s.vips)}, {"ports", ports},
            {"endpoints", s.endpoints}};
  if (!s.hostname.empty()) j["hostname"] = s.hostname;
  return j;
}

json to_json(const AuthorizationPolicy& p) {
  json rules = json::array();
  for (const auto& rule : p.rules) {
    json r = json::object();
    for (const auto& src : rule.from) {
      json source = json::object();
      put_list(source, "principals", src.principals);
      put_list(source, "notPrincipals", src.not_principals);
      put_list(source, "namespaces", src.namespaces);
      put_list(source, "notNamespaces", src.not_namespaces);
      put_list(source, "ipBlocks", block_texts(src.ip_blocks));
      put_list(source, "notIpBlocks", block_texts(src.not_ip_blocks));
      r["from"].push_back({{"source", source}});
    }
    for (const auto& op : rule.to) {
      json operation = json::object();
      put_list(operation, "ports", op.ports);
      put_list(operation, "notPorts", op.not_ports);
      r["to"].push_back({{"operation", operation}});
    }
    rules.push_back(r);
  }
  json j = {{"name", p.name},
            {"namespace", p.namespace_},
            {"action", p.action == AuthorizationPolicy::Action::Deny ? "DENY" : "ALLOW"},
            {"rules", rules}};
  if (!p.selector.empty()) j["selector"] = {{"workloads", p.selector}};
  return j;
}

json to_json(const MeshConfig& c) {
  json j = {{"workloads", json::array()}, {"services", json::array()}, {"policies", json::array()}};
  for (const auto& w : c.workloads) j["workloads"].push_back(to_json(w));
  for (const auto& s : c.services) j["services"].push_back(to_json(s));
  for (const auto& p : c.policies) j["policies"].push_back(to_json(p));
  return j;
}

MeshConfig load_config(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path.string() + ": cannot read: " + std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  try {
    return parse_config(text.str());
  } catch (const ConfigError& e) {
    throw ConfigError(path.string() + ": " + e.what());
  }
}

}  // namespace zmesh
