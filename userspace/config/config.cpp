// The mesh config parser (see include/zmesh/config.h). Every error names the JSON path.
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "fields.h"
#include "zmesh/config.h"
#include "zmesh/json.h"

namespace zmesh {
using namespace config;  // NOLINT: this module's own helpers

namespace {

WorkloadConfig workload(const json& j, const std::string& path) {
  only_keys(j, path, {"uid", "name", "namespace", "serviceAccount", "node", "workloadIps", "protocol", "mtlsMode",
                      "cgroup", "hostVeth", "authorizationPolicies"});
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
  w.authorization_policies = string_list(j, path, "authorizationPolicies");
  for (size_t i = 0; i < w.authorization_policies.size(); ++i) {
    const std::string& key = w.authorization_policies[i];
    const auto slash = key.find('/');
    if (slash == std::string::npos || !dns_label(key.substr(0, slash)) || !dns_subdomain(key.substr(slash + 1)))
      fail(path + ".authorizationPolicies[" + std::to_string(i) + "]",
           "'" + printable(key) + "' is not \"<namespace>/<policy name>\"");
  }
  return w;
}

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
      config.policies.push_back(parse_policy(root["policies"][i], "policies[" + std::to_string(i) + "]"));
  unique_keys(config.workloads, "workloads");
  unique_keys(config.services, "services");
  unique_keys(config.policies, "policies");
  return config;
}

const char* to_string(TunnelProtocol protocol) { return protocol == TunnelProtocol::Tcp ? "TCP" : "HBONE"; }

WorkloadConfig parse_workload(const json& j, const std::string& path) { return workload(j, path); }
bool is_namespace_name(std::string_view text) { return dns_label(text); }
bool is_object_name(std::string_view text) { return dns_subdomain(text); }

json to_json(const WorkloadConfig& w) {
  json j = {{"uid", w.uid},       {"name", w.name},
            {"namespace", w.namespace_}, {"serviceAccount", w.service_account},
            {"node", w.node},     {"workloadIps", ip_texts(w.ips)},
            {"protocol", to_string(w.protocol)}, {"mtlsMode", w.mtls_strict ? "STRICT" : "PERMISSIVE"}};
  if (!w.cgroup.empty()) j["cgroup"] = w.cgroup;
  if (!w.host_veth.empty()) j["hostVeth"] = w.host_veth;
  put_list(j, "authorizationPolicies", w.authorization_policies);
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
