// The mesh config parser (see include/zmesh/config.h). Every error names the JSON path.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "zmesh/config.h"

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
  w.name = string_field(j, path, "name", true);
  w.namespace_ = string_field(j, path, "namespace", true);
  w.uid = string_field(j, path, "uid", false);
  if (w.uid.empty()) w.uid = w.namespace_ + "/" + w.name;
  w.service_account = string_field(j, path, "serviceAccount", false);
  if (w.service_account.empty()) w.service_account = "default";
  w.node = string_field(j, path, "node", true);
  w.ips = ip_list(j, path, "workloadIps");
  const std::string protocol = string_field(j, path, "protocol", false);
  if (!protocol.empty() && protocol != "HBONE" && protocol != "TCP")
    fail(path + ".protocol", "expected \"HBONE\" or \"TCP\", got \"" + protocol + "\"");
  const std::string mtls = string_field(j, path, "mtlsMode", false);
  if (!mtls.empty() && mtls != "STRICT" && mtls != "PERMISSIVE")
    fail(path + ".mtlsMode", "expected \"STRICT\" or \"PERMISSIVE\", got \"" + mtls + "\"");
  w.mtls_strict = mtls != "PERMISSIVE";
  w.cgroup = string_field(j, path, "cgroup", false);
  w.host_veth = string_field(j, path, "hostVeth", false);
  return w;
}

ServiceConfig service(const json& j, const std::string& path) {
  only_keys(j, path, {"name", "namespace", "hostname", "vips", "ports"});
  ServiceConfig s;
  s.name = string_field(j, path, "name", true);
  s.namespace_ = string_field(j, path, "namespace", true);
  s.hostname = string_field(j, path, "hostname", false);
  s.vips = ip_list(j, path, "vips");
  return s;
}

}  // namespace

MeshConfig parse_config(const std::string& json_text) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::parse_error& e) {
    throw ConfigError(std::string("not valid JSON: ") + e.what());
  }
  only_keys(root, "(top level)", {"workloads", "services", "policies"});
  MeshConfig config;
  for (const char* key : {"workloads", "services"})
    if (root.contains(key) && !root.at(key).is_array()) fail(key, "expected a list");
  if (root.contains("workloads"))
    for (size_t i = 0; i < root["workloads"].size(); ++i)
      config.workloads.push_back(workload(root["workloads"][i], "workloads[" + std::to_string(i) + "]"));
  if (root.contains("services"))
    for (size_t i = 0; i < root["services"].size(); ++i)
      config.services.push_back(service(root["services"][i], "services[" + std::to_string(i) + "]"));
  return config;
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
