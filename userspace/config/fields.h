// Reading and writing the fields of the config's JSON, each error naming its path
// ("workloads[2].workloadIps[0]: 'x' is not an IP address"). Shared by the workload, service
// and policy parsers of this module.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "zmesh/address.h"
#include "zmesh/config.h"

namespace zmesh::config {

using nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& why);  // throws ConfigError
// Rejects keys outside `known`, so that a typo is an error and not a silent default.
void only_keys(const json& object, const std::string& path, const std::set<std::string>& known);
std::string string_field(const json& object, const std::string& path, const char* key, bool required);
bool bool_field(const json& object, const std::string& path, const char* key);

// Kubernetes' names (k8s.io/apimachinery validation): a DNS-1123 label for namespaces (63
// characters of [a-z0-9-], alphanumeric at both ends), a DNS-1123 subdomain for object names
// (253 characters, labels joined by '.'). Nothing else can name a pod, so nothing else is
// accepted: a '/' would make "namespace/name" keys ambiguous.
bool dns_label(std::string_view s, size_t max = 63);
bool dns_subdomain(std::string_view s);
enum class NameKind { Label, Subdomain };
std::string name_field(const json& object, const std::string& path, const char* key, bool required, NameKind kind);

// Lists; a missing key is an empty list. Strings must not be empty.
std::vector<std::string> string_list(const json& object, const std::string& path, const char* key);
std::vector<boost::asio::ip::address> ip_list(const json& object, const std::string& path, const char* key);
std::vector<IpBlock> ip_blocks(const json& object, const std::string& path, const char* key);
// Ports 1..65535, as numbers or as Istio writes them, strings.
std::vector<uint16_t> port_list(const json& object, const std::string& path, const char* key);

// {"servicePort": targetPort, ...}, both 1..65535.
PortMap port_map(const json& object, const std::string& path, const char* key);
// A string field that may hold anything printable (a free-form label); control bytes refused.
std::string text_field(const json& object, const std::string& path, const char* key);

// The other way.
std::vector<std::string> ip_texts(const std::vector<boost::asio::ip::address>& ips);
std::vector<std::string> block_texts(const std::vector<IpBlock>& blocks);
json port_map_json(const PortMap& ports);
// Adds `key: value` only when the list is not empty, as a person would write the file.
template <typename T>
void put_list(json& object, const char* key, const std::vector<T>& values) {
  if (!values.empty()) object[key] = values;
}

}  // namespace zmesh::config
