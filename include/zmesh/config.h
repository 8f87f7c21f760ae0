// The mesh config file: workloads and services, in a shape close to ztunnel's local config
// (`workloads`, `services`) so that Istio users recognise it. Plain data; load_config checks
// it and says where and what is wrong ("workloads[2].workloadIps[0]: 'x' is not an IP
// address").
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <nlohmann/json_fwd.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "zmesh/address.h"

namespace zmesh {

// How a workload is reached: in the mesh over HBONE, or known (identity, policies) but not
// meshed, its address not captured and connections to it plain TCP, as ztunnel's NONE.
enum class TunnelProtocol { Hbone, Tcp };
const char* to_string(TunnelProtocol protocol);  // "HBONE", "TCP": the config's spelling

// Service ports as a map: service port -> target port ("ports": {"80": 8080}).
using PortMap = std::map<uint16_t, uint16_t>;

struct WorkloadConfig {
  std::string uid;
  std::string name;
  std::string namespace_;
  std::string service_account;
  std::string node;
  std::vector<boost::asio::ip::address> ips;
  TunnelProtocol protocol = TunnelProtocol::Hbone;  // "protocol": "HBONE" (default) | "TCP"
  bool mtls_strict = true;  // "mtlsMode": "STRICT" (default) | "PERMISSIVE" (plaintext inbound allowed)
  // Where the workload lives on its node; in Kubernetes the CNI plugin tells (issue 8).
  std::string cgroup;
  std::string host_veth;
  // What istiod also says of a workload (issue 16); the config file may say it too.
  std::vector<std::string> authorization_policies;  // WORKLOAD_SELECTOR policies ("namespace/name") that select it
  std::string trust_domain;                         // empty: the node's
  std::string network;
  std::string canonical_name, canonical_revision;   // Istio's service.istio.io/canonical-* labels
  std::string workload_name;                        // its Deployment's (or other owner's) name
  std::string cluster_id;                           // the cluster istiod says it runs in; empty: not known
  std::string waypoint;                             // the waypoint istiod names for it, as text; empty: none
  bool healthy = true;                              // an unhealthy endpoint is chosen last
  std::map<std::string, PortMap> services;          // "namespace/hostname" -> its ports here (xDS endpoints)
  // Where it came from (the controller's to set; the JSON says only "identityFrom": "xds"):
  // istiod's workloads of this node are captured once the CNI plugin enrolled them; a pod the
  // plugin enrolled without a service account takes its identity from its xDS Workload and,
  // until that comes, stays captured with no identity: it fails closed (docs/istio.md).
  enum class Origin { Config, Xds, AwaitingXds };
  Origin origin = Origin::Config;
  bool operator==(const WorkloadConfig&) const = default;
};

struct ServiceConfig {
  std::string name;
  std::string namespace_;
  std::string hostname;
  std::vector<boost::asio::ip::address> vips;
  PortMap ports;
  std::vector<std::string> endpoints;  // workload names in the service's namespace (xDS: the workloads list the service)
  // xDS load balancing: STRICT with NODE in routing_preference keeps a client on its own node's
  // endpoints (Kubernetes' internalTrafficPolicy: Local); the rest is round-robin.
  enum class LoadBalancing { Unspecified, Strict, Failover, Passthrough };
  LoadBalancing load_balancing = LoadBalancing::Unspecified;
  bool node_local = false;  // routing_preference names NODE
  std::string waypoint;     // the waypoint istiod names for it, as text; empty: none
  bool operator==(const ServiceConfig&) const = default;
};

// Istio AuthorizationPolicy at L4, in the shape istiod sends a node proxy (istio.security.
// Authorization): a policy matches when any of its rules does; a rule when every one of its
// clauses does; a clause when any of its matches does (a clause with none: always); a match
// when every field it sets matches, and none of its not_ fields does (a match that sets
// nothing matches nothing). The config file's `from`/`to` are a rule's two clauses: its
// sources and its operations. Principals are "<trust-domain>/ns/<ns>/sa/<sa>" and, like
// namespaces, patterns: exact, "*" (any), "prefix*" or "*suffix".
// Istio's root namespace: its policies without a selector apply to every workload.
inline constexpr const char* kRootNamespace = "istio-system";

struct ServiceAccountRef {
  std::string namespace_, name;
  auto operator<=>(const ServiceAccountRef&) const = default;
};
struct PolicyMatch {
  std::vector<std::string> principals, not_principals, namespaces, not_namespaces;
  std::vector<ServiceAccountRef> service_accounts, not_service_accounts;
  std::vector<IpBlock> source_ips, not_source_ips, destination_ips, not_destination_ips;
  std::vector<uint16_t> ports, not_ports;  // destination ports
  bool empty() const;
  bool operator==(const PolicyMatch&) const = default;
};
struct PolicyClause {
  std::vector<PolicyMatch> matches;
  bool operator==(const PolicyClause&) const = default;
};
struct PolicyRule {
  std::vector<PolicyClause> clauses;
  bool operator==(const PolicyRule&) const = default;
};
struct AuthorizationPolicy {
  enum class Action { Allow, Deny };
  // Which workloads it applies to: all (GLOBAL: a policy of the root namespace without a
  // selector), its namespace's, or those selected — by name in `selector` (the config file),
  // or listing it in their `authorization_policies` (xDS).
  enum class Scope { Global, Namespace, WorkloadSelector };
  std::string name;
  std::string namespace_;
  Action action = Action::Allow;
  Scope scope = Scope::Namespace;
  std::vector<std::string> selector;  // workload names in the namespace (every namespace's, in the root one)
  std::vector<PolicyRule> rules;      // ALLOW with no rules allows nothing; DENY with none denies nothing
  bool dry_run = false;               // decided and reported, never enforced
  bool operator==(const AuthorizationPolicy&) const = default;
};
const char* to_string(AuthorizationPolicy::Scope scope);  // "GLOBAL", "NAMESPACE", "WORKLOAD_SELECTOR"

struct MeshConfig {
  std::vector<WorkloadConfig> workloads;
  std::vector<ServiceConfig> services;
  std::vector<AuthorizationPolicy> policies;
};

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

MeshConfig parse_config(const std::string& json_text);            // throws ConfigError
MeshConfig load_config(const std::filesystem::path& path);        // prefixes the file name
// Kubernetes' names: a namespace is a DNS-1123 label (63 of a-z, 0-9, '-'), a pod, service
// account or node name a DNS-1123 subdomain (253, labels joined by '.').
bool is_namespace_name(std::string_view text);
bool is_object_name(std::string_view text);

// "10.244.0.0/16", "fd00::/8" or a bare address; IPv4-mapped forms become IPv4. Throws
// ConfigError naming `what`.
IpBlock parse_ip_block(const std::string& text, const std::string& what);
// One object of the config, as the control socket (or the xDS translation) gives it; errors are
// prefixed `path`. istiod names no node for workloads off any node (VMs, other clusters).
WorkloadConfig parse_workload(const nlohmann::json& j, const std::string& path, bool node_required = true);
ServiceConfig parse_service(const nlohmann::json& j, const std::string& path);
AuthorizationPolicy parse_policy(const nlohmann::json& j, const std::string& path);

// The same shapes back, so that parse(to_json(x)) == x: for listings and the runtime layer's file.
nlohmann::json to_json(const WorkloadConfig& w);
nlohmann::json to_json(const ServiceConfig& s);
nlohmann::json to_json(const AuthorizationPolicy& p);
nlohmann::json to_json(const MeshConfig& c);

// "namespace/hostname" (hostname: the config's, else "<name>.<namespace>"): how xDS names a
// service, and how workloads name the services they serve.
std::string service_key(const ServiceConfig& s);

// A waypoint as xDS and the config name it (`waypoint`): "IP:PORT", "[IPv6]:PORT" (a waypoint
// pod's or its Service's address) or "namespace/hostname:PORT" (its Service, by service_key).
struct WaypointAddress {
  std::optional<boost::asio::ip::address> ip;
  std::string service;
  uint16_t port = 15008;  // its HBONE port
};
// nullopt when `text` is none of the three.
std::optional<WaypointAddress> parse_waypoint(const std::string& text);

// "namespace/name", the key by which workloads, services and policies are told apart.
template <typename T>
std::string key_of(const T& object) {
  return object.namespace_ + "/" + object.name;
}

}  // namespace zmesh
