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

std::optional<WaypointAddress> parse_waypoint(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size() || text.size() - colon > 6) return std::nullopt;
  const std::string port_text = text.substr(colon + 1), host = text.substr(0, colon);
  if (!std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  const unsigned long port = std::stoul(port_text);
  if (port == 0 || port > 65535) return std::nullopt;
  WaypointAddress out;
  out.port = static_cast<uint16_t>(port);
  if (const auto slash = host.find('/'); slash != std::string::npos) {
    if (slash == 0 || slash + 1 == host.size() || host.find('/', slash + 1) != std::string::npos) return std::nullopt;
    out.service = host;
    return out;
  }
  const bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
  boost::system::error_code ec;
  const auto ip = boost::asio::ip::make_address(bracketed ? host.substr(1, host.size() - 2) : host, ec);
  if (ec || ip.is_v6() != bracketed) return std::nullopt;
  out.ip = ip;
  return out;
}

namespace {

// "waypoint": empty (none), or a waypoint as parse_waypoint reads it.
std::string waypoint_field(const json& j, const std::string& path) {
  std::string text = text_field(j, path, "waypoint");
  if (!text.empty() && !parse_waypoint(text))
    fail(path + ".waypoint", "'" + printable(text) + "' is not IP:PORT, [IPv6]:PORT or namespace/hostname:PORT");
  return text;
}

WorkloadConfig workload(const json& j, const std::string& path, bool node_required) {
  only_keys(j, path, {"uid", "name", "namespace", "serviceAccount", "node", "workloadIps", "protocol", "mtlsMode",
                      "cgroup", "hostVeth", "authorizationPolicies", "trustDomain", "network", "canonicalName",
                      "canonicalRevision", "workloadName", "clusterId", "waypoint", "status", "services", "identityFrom"});
  WorkloadConfig w;
  w.name = name_field(j, path, "name", true, NameKind::Subdomain);
  w.namespace_ = name_field(j, path, "namespace", true, NameKind::Label);
  w.uid = printable(string_field(j, path, "uid", false));
  if (w.uid.empty()) w.uid = w.namespace_ + "/" + w.name;
  w.service_account = name_field(j, path, "serviceAccount", false, NameKind::Subdomain);
  if (w.service_account.empty()) w.service_account = "default";
  w.node = name_field(j, path, "node", node_required, NameKind::Subdomain);
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
  const std::string identity_from = string_field(j, path, "identityFrom", false);
  if (!identity_from.empty() && identity_from != "xds")
    fail(path + ".identityFrom", "expected \"xds\" (or no identityFrom: the serviceAccount given), got \"" +
                                     printable(identity_from) + "\"");
  if (identity_from == "xds") {
    if (j.contains("serviceAccount")) fail(path + ".serviceAccount", "a pod whose identity comes from xDS names none");
    w.origin = WorkloadConfig::Origin::AwaitingXds;
  }
  w.trust_domain = string_field(j, path, "trustDomain", false);
  if (!w.trust_domain.empty() && !dns_subdomain(w.trust_domain))
    fail(path + ".trustDomain", "'" + printable(w.trust_domain) + "' is not a trust domain (a DNS name in lower case)");
  w.network = text_field(j, path, "network");
  w.canonical_name = text_field(j, path, "canonicalName");
  w.canonical_revision = text_field(j, path, "canonicalRevision");
  w.workload_name = text_field(j, path, "workloadName");
  w.cluster_id = text_field(j, path, "clusterId");
  w.waypoint = waypoint_field(j, path);
  const std::string status = string_field(j, path, "status", false);
  if (!status.empty() && status != "HEALTHY" && status != "UNHEALTHY")
    fail(path + ".status", "expected \"HEALTHY\" or \"UNHEALTHY\", got \"" + printable(status) + "\"");
  w.healthy = status != "UNHEALTHY";
  if (j.contains("services")) {
    if (!j["services"].is_object()) fail(path + ".services", "expected an object of \"namespace/hostname\": ports");
    for (const auto& [key, ports] : j["services"].items()) {
      const std::string here = path + ".services." + printable(key);
      const auto slash = key.find('/');
      if (slash == std::string::npos || !dns_label(key.substr(0, slash)) || key.size() == slash + 1)
        fail(here, "expected \"<namespace>/<hostname>\"");
      w.services[key] = port_map(j["services"], path + ".services", key.c_str());
    }
  }
  return w;
}

ServiceConfig service(const json& j, const std::string& path) {
  only_keys(j, path, {"name", "namespace", "hostname", "vips", "ports", "endpoints", "loadBalancing", "nodeLocal",
                      "waypoint"});
  ServiceConfig s;
  s.name = name_field(j, path, "name", true, NameKind::Label);
  s.namespace_ = name_field(j, path, "namespace", true, NameKind::Label);
  s.hostname = text_field(j, path, "hostname");
  s.vips = ip_list(j, path, "vips");
  s.ports = port_map(j, path, "ports");
  const std::string mode = string_field(j, path, "loadBalancing", false);
  if (mode == "STRICT") s.load_balancing = ServiceConfig::LoadBalancing::Strict;
  else if (mode == "FAILOVER") s.load_balancing = ServiceConfig::LoadBalancing::Failover;
  else if (mode == "PASSTHROUGH") s.load_balancing = ServiceConfig::LoadBalancing::Passthrough;
  else if (!mode.empty())
    fail(path + ".loadBalancing", "expected \"STRICT\", \"FAILOVER\" or \"PASSTHROUGH\", got \"" + printable(mode) + "\"");
  s.node_local = bool_field(j, path, "nodeLocal");
  s.waypoint = waypoint_field(j, path);
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
      config.workloads.push_back(workload(root["workloads"][i], "workloads[" + std::to_string(i) + "]", true));
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

WorkloadConfig parse_workload(const json& j, const std::string& path, bool node_required) {
  return workload(j, path, node_required);
}
ServiceConfig parse_service(const json& j, const std::string& path) { return service(j, path); }

std::string service_key(const ServiceConfig& s) {
  return s.namespace_ + "/" + (s.hostname.empty() ? s.name + "." + s.namespace_ : s.hostname);
}
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
  for (const auto& [key, value] : {std::pair{"trustDomain", &w.trust_domain}, std::pair{"network", &w.network},
                                    std::pair{"canonicalName", &w.canonical_name},
                                    std::pair{"canonicalRevision", &w.canonical_revision},
                                    std::pair{"workloadName", &w.workload_name}, std::pair{"clusterId", &w.cluster_id},
                                    std::pair{"waypoint", &w.waypoint}})
    if (!value->empty()) j[key] = *value;
  if (!w.healthy) j["status"] = "UNHEALTHY";
  if (w.origin == WorkloadConfig::Origin::AwaitingXds) {
    j["identityFrom"] = "xds";
    j.erase("serviceAccount");
  }
  for (const auto& [key, ports] : w.services) j["services"][key] = port_map_json(ports);
  return j;
}

json to_json(const ServiceConfig& s) {
  json j = {{"name", s.name}, {"namespace", s.namespace_}, {"vips", ip_texts(s.vips)}, {"ports", port_map_json(s.ports)},
            {"endpoints", s.endpoints}};
  if (!s.hostname.empty()) j["hostname"] = s.hostname;
  static constexpr const char* kModes[] = {"", "STRICT", "FAILOVER", "PASSTHROUGH"};
  if (s.load_balancing != ServiceConfig::LoadBalancing::Unspecified)
    j["loadBalancing"] = kModes[static_cast<int>(s.load_balancing)];
  if (s.node_local) j["nodeLocal"] = true;
  if (!s.waypoint.empty()) j["waypoint"] = s.waypoint;
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
