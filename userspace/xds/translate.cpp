// See translate.h. Field meanings: proto/workload.proto and proto/authorization.proto.
#include "translate.h"

#include <google/protobuf/any.pb.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <nlohmann/json.hpp>

#include "authorization.pb.h"
#include "workload.pb.h"
#include "zmesh/json.h"

namespace zmesh::xds {
namespace {

using nlohmann::json;
namespace pb = istio::workload;
namespace sec = istio::security;

[[noreturn]] void fail(const std::string& what) { throw ConfigError(what); }

// 4 or 16 bytes, as istiod writes addresses.
boost::asio::ip::address ip_of(const std::string& bytes, const std::string& path) {
  if (bytes.size() == 4) {
    boost::asio::ip::address_v4::bytes_type b;
    std::copy(bytes.begin(), bytes.end(), b.begin());
    return boost::asio::ip::address_v4(b);
  }
  if (bytes.size() == 16) {
    boost::asio::ip::address_v6::bytes_type b;
    std::copy(bytes.begin(), bytes.end(), b.begin());
    return boost::asio::ip::address_v6(b);
  }
  fail(path + ": " + std::to_string(bytes.size()) + " bytes, an IP address has 4 or 16");
}

uint16_t port_of(uint32_t port, const std::string& path, bool zero_ok) {
  if (port > 65535 || (port == 0 && !zero_ok)) fail(path + ": port " + std::to_string(port) + " is not 1..65535");
  return static_cast<uint16_t>(port);
}

// istiod makes up some names ("istio_converted_static_strict"): any printable text without
// '/', which would make "namespace/name" keys ambiguous.
std::string own_name(const std::string& name, const std::string& path) {
  if (name.empty()) fail(path + ": missing");
  if (name.size() > 253) fail(path + ": longer than 253 characters");
  if (name.find('/') != std::string::npos || printable(name) != name ||
      std::any_of(name.begin(), name.end(), [](char c) { return static_cast<unsigned char>(c) <= ' '; }))
    fail(path + ": '" + printable(name) + "' has a '/', a space or a character that is not printable");
  return name;
}

std::string gateway_text(const pb::GatewayAddress& g) {
  const std::string port = std::to_string(g.hbone_mtls_port() ? g.hbone_mtls_port() : 15008);
  if (g.has_hostname()) return g.hostname().namespace_() + "/" + g.hostname().hostname() + ":" + port;
  if (g.has_address()) {
    const auto ip = ip_of(g.address().address(), "waypoint.address");
    return (ip.is_v6() ? "[" + ip.to_string() + "]" : ip.to_string()) + ":" + port;
  }
  return "";
}

json port_map(const google::protobuf::RepeatedPtrField<pb::Port>& ports, const std::string& path, bool zero_is_same) {
  json out = json::object();
  for (int i = 0; i < ports.size(); ++i) {
    const std::string here = path + "[" + std::to_string(i) + "]";
    const uint16_t service_port = port_of(ports[i].service_port(), here + ".service_port", false);
    const uint16_t target = port_of(ports[i].target_port(), here + ".target_port", true);
    // 0: a named port istiod could not resolve here. On a service: the service port; on a
    // workload: left out, so the service's target port applies.
    if (target == 0 && !zero_is_same) continue;
    out[std::to_string(service_port)] = target ? target : service_port;
  }
  return out;
}

WorkloadConfig workload(const pb::Workload& w, const std::string& name) {
  if (!pb::TunnelProtocol_IsValid(w.tunnel_protocol()))
    fail("tunnel_protocol: unknown value " + std::to_string(w.tunnel_protocol()));
  if (!pb::WorkloadStatus_IsValid(w.status())) fail("status: unknown value " + std::to_string(w.status()));
  if (w.uid() != name) fail("uid '" + printable(w.uid()) + "' is not the resource name");
  // The uid is the key removals come by: one the config would rewrite (empty: from the name;
  // control bytes: escaped) could never be removed.
  if (w.uid().empty() || printable(w.uid()) != w.uid() ||
      std::any_of(w.uid().begin(), w.uid().end(), [](char c) { return static_cast<unsigned char>(c) < ' ' || c == 0x7f; }))
    fail("uid '" + printable(w.uid()) + "' is empty or has control characters");
  json j = {{"uid", w.uid()}, {"name", w.name()}, {"namespace", w.namespace_()}};
  json ips = json::array();
  for (int i = 0; i < w.addresses_size(); ++i)
    ips.push_back(ip_of(w.addresses(i), "addresses[" + std::to_string(i) + "]").to_string());
  j["workloadIps"] = ips;
  if (!w.service_account().empty()) j["serviceAccount"] = w.service_account();
  if (!w.node().empty()) j["node"] = w.node();
  // LEGACY_ISTIO_MTLS (a sidecar) is reached as plain TCP: zmesh speaks no Istio mTLS of
  // sidecars yet (docs/istio.md).
  j["protocol"] = w.tunnel_protocol() == pb::HBONE ? "HBONE" : "TCP";
  // STRICT PeerAuthentication reaches a node proxy as a policy istiod converts it to (a DENY
  // of connections without a principal), enforced by the proxy: the kernel passes plaintext
  // to it for every xDS workload.
  j["mtlsMode"] = "PERMISSIVE";
  for (const auto& [key, value] : {std::pair{"trustDomain", &w.trust_domain()}, std::pair{"network", &w.network()},
                                   std::pair{"canonicalName", &w.canonical_name()},
                                   std::pair{"canonicalRevision", &w.canonical_revision()},
                                   std::pair{"workloadName", &w.workload_name()},
                                   std::pair{"clusterId", &w.cluster_id()}})
    if (!value->empty()) j[key] = *value;
  if (w.has_waypoint()) j["waypoint"] = gateway_text(w.waypoint());
  if (w.status() == pb::UNHEALTHY) j["status"] = "UNHEALTHY";
  for (const auto& [service, ports] : w.services())
    j["services"][service] = port_map(ports.ports(), "services[" + printable(service) + "].ports", false);
  WorkloadConfig out = parse_workload(j, "workload", false);
  for (int i = 0; i < w.authorization_policies_size(); ++i) {
    const std::string& key = w.authorization_policies(i);
    const std::string here = "authorization_policies[" + std::to_string(i) + "]";
    const auto slash = key.find('/');
    if (slash == std::string::npos || !is_namespace_name(key.substr(0, slash)))
      fail(here + ": '" + printable(key) + "' is not \"<namespace>/<policy name>\"");
    own_name(key.substr(slash + 1), here);
    out.authorization_policies.push_back(key);
  }
  return out;
}

ServiceConfig service(const pb::Service& s, const std::string& name) {
  if (s.namespace_() + "/" + s.hostname() != name)
    fail("'" + printable(s.namespace_()) + "/" + printable(s.hostname()) + "' (namespace/hostname) is not the resource name");
  const auto& lb = s.load_balancing();
  if (!pb::LoadBalancing_Mode_IsValid(lb.mode())) fail("load_balancing.mode: unknown value " + std::to_string(lb.mode()));
  json j = {{"name", "placeholder"}, {"namespace", s.namespace_()}, {"hostname", s.hostname()}};
  json vips = json::array();
  for (int i = 0; i < s.addresses_size(); ++i)
    vips.push_back(ip_of(s.addresses(i).address(), "addresses[" + std::to_string(i) + "].address").to_string());
  j["vips"] = vips;
  j["ports"] = port_map(s.ports(), "ports", true);
  static constexpr const char* kModes[] = {"", "STRICT", "FAILOVER", "PASSTHROUGH"};
  if (lb.mode() != pb::LoadBalancing::UNSPECIFIED_MODE) j["loadBalancing"] = kModes[lb.mode()];
  const auto& scopes = lb.routing_preference();
  if (std::find(scopes.begin(), scopes.end(), pb::LoadBalancing::NODE) != scopes.end()) j["nodeLocal"] = true;
  if (s.has_waypoint()) j["waypoint"] = gateway_text(s.waypoint());
  ServiceConfig out = parse_service(j, "service");
  out.name = own_name(s.name(), "name");
  return out;
}

// StringMatch as Istio's wildcard text: exact, "prefix*", "*suffix", "*" (presence).
json string_matches(const google::protobuf::RepeatedPtrField<sec::StringMatch>& list, const std::string& path) {
  json out = json::array();
  for (int i = 0; i < list.size(); ++i) {
    const auto& m = list[i];
    const std::string here = path + "[" + std::to_string(i) + "]";
    const auto plain = [&](const std::string& v) {
      if (v.find('*') != std::string::npos) fail(here + ": '" + printable(v) + "' has a '*', which no match of ours can say");
      return v;
    };
    switch (m.match_type_case()) {
      case sec::StringMatch::kExact: out.push_back(plain(m.exact())); break;
      case sec::StringMatch::kPrefix: out.push_back(plain(m.prefix()) + "*"); break;
      case sec::StringMatch::kSuffix: out.push_back("*" + plain(m.suffix())); break;
      case sec::StringMatch::kPresence: out.push_back("*"); break;
      default: fail(here + ": sets no match");
    }
  }
  return out;
}

json blocks(const google::protobuf::RepeatedPtrField<sec::Address>& list, const std::string& path) {
  json out = json::array();
  for (int i = 0; i < list.size(); ++i) {
    const std::string here = path + "[" + std::to_string(i) + "]";
    const auto ip = ip_of(list[i].address(), here + ".address");
    if (list[i].length() > (ip.is_v4() ? 32u : 128u))
      fail(here + ".length: " + std::to_string(list[i].length()) + " is longer than the address");
    out.push_back(ip.to_string() + "/" + std::to_string(list[i].length()));
  }
  return out;
}

json accounts(const google::protobuf::RepeatedPtrField<sec::ServiceAccountMatch>& list) {
  json out = json::array();
  for (const auto& a : list) out.push_back(a.namespace_() + "/" + a.serviceaccount());
  return out;
}

json ports(const google::protobuf::RepeatedField<uint32_t>& list, const std::string& path) {
  json out = json::array();
  for (int i = 0; i < list.size(); ++i) out.push_back(port_of(list[i], path + "[" + std::to_string(i) + "]", false));
  return out;
}

json match(const sec::Match& m, const std::string& path) {
  json j = json::object();
  const auto put = [&](const char* key, json value) {
    if (!value.empty()) j[key] = std::move(value);
  };
  put("namespaces", string_matches(m.namespaces(), path + ".namespaces"));
  put("notNamespaces", string_matches(m.not_namespaces(), path + ".not_namespaces"));
  put("principals", string_matches(m.principals(), path + ".principals"));
  put("notPrincipals", string_matches(m.not_principals(), path + ".not_principals"));
  put("serviceAccounts", accounts(m.service_accounts()));
  put("notServiceAccounts", accounts(m.not_service_accounts()));
  put("sourceIps", blocks(m.source_ips(), path + ".source_ips"));
  put("notSourceIps", blocks(m.not_source_ips(), path + ".not_source_ips"));
  put("destinationIps", blocks(m.destination_ips(), path + ".destination_ips"));
  put("notDestinationIps", blocks(m.not_destination_ips(), path + ".not_destination_ips"));
  put("destinationPorts", ports(m.destination_ports(), path + ".destination_ports"));
  put("notDestinationPorts", ports(m.not_destination_ports(), path + ".not_destination_ports"));
  return j;  // empty: a match that sets nothing (see policy())
}

AuthorizationPolicy policy(const sec::Authorization& a, const std::string& name) {
  if (!sec::Scope_IsValid(a.scope())) fail("scope: unknown value " + std::to_string(a.scope()));
  if (!sec::Action_IsValid(a.action())) fail("action: unknown value " + std::to_string(a.action()));
  if (a.namespace_() + "/" + a.name() != name)
    fail("'" + printable(a.namespace_()) + "/" + printable(a.name()) + "' (namespace/name) is not the resource name");
  static constexpr const char* kScopes[] = {"GLOBAL", "NAMESPACE", "WORKLOAD_SELECTOR"};
  json j = {{"name", "placeholder"},
            {"namespace", a.namespace_()},
            {"scope", kScopes[a.scope()]},
            {"action", a.action() == sec::DENY ? "DENY" : "ALLOW"}};
  if (a.dry_run()) j["dryRun"] = true;
  // A match that sets nothing (or only extensions) matches nothing, as in ztunnel and our
  // Authorizer; the file refuses one as a likely mistake, so it passes the parser as a
  // placeholder and is made empty again after it.
  struct At {
    size_t rule, clause, match;
  };
  std::vector<At> empty_matches;
  json rules = json::array();
  for (int r = 0; r < a.rules_size(); ++r) {
    json clauses = json::array();
    for (int c = 0; c < a.rules(r).clauses_size(); ++c) {
      json matches = json::array();
      const auto& clause = a.rules(r).clauses(c);
      for (int m = 0; m < clause.matches_size(); ++m) {
        json one = match(clause.matches(m), "rules[" + std::to_string(r) + "].clauses[" + std::to_string(c) +
                                                "].matches[" + std::to_string(m) + "]");
        if (one.empty()) {
          empty_matches.push_back({size_t(r), size_t(c), size_t(m)});
          one = {{"destinationPorts", {1}}};
        }
        matches.push_back(std::move(one));
      }
      clauses.push_back({{"matches", matches}});
    }
    rules.push_back({{"clauses", clauses}});
  }
  j["rules"] = rules;
  AuthorizationPolicy out = parse_policy(j, "authorization");
  for (const auto& at : empty_matches) out.rules[at.rule].clauses[at.clause].matches[at.match] = PolicyMatch{};
  out.name = own_name(a.name(), "name");
  return out;
}

}  // namespace

Resource decode(const std::string& type_url, const std::string& name, const google::protobuf::Any& any) {
  if (any.type_url() != type_url)
    fail("carries a " + printable(any.type_url()) + " in a response for " + type_url);
  if (type_url == kAddressType) {
    pb::Address address;
    if (!address.ParseFromString(any.value())) fail("is not a valid istio.workload.Address");
    if (address.has_workload()) return workload(address.workload(), name);
    if (address.has_service()) return service(address.service(), name);
    fail("is an Address with neither a workload nor a service");
  }
  if (type_url == kAuthorizationType) {
    sec::Authorization authorization;
    if (!authorization.ParseFromString(any.value())) fail("is not a valid istio.security.Authorization");
    return policy(authorization, name);
  }
  fail("has a type zmesh does not subscribe to: " + printable(type_url));
}

}  // namespace zmesh::xds
