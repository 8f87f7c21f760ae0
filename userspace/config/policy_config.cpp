// AuthorizationPolicy in the config's JSON (see include/zmesh/config.h): Istio's spelling —
// `selector`, rules of `from` sources and `to` operations — and, for what only xDS can say
// (clauses that mix sources and destinations, destination IPs), rules of `clauses`. Every
// error names its JSON path; parse_policy(to_json(p)) == p for every policy.
#include <algorithm>

#include "fields.h"
#include "zmesh/config.h"
#include "zmesh/json.h"

namespace zmesh {
using namespace config;  // NOLINT: this module's own helpers

namespace {

// Istio's wildcard: the whole value "*", or one '*' leading or ending it.
bool wildcard_ok(std::string_view s) {
  const size_t stars = static_cast<size_t>(std::count(s.begin(), s.end(), '*'));
  return stars == 0 || s == "*" || (stars == 1 && (s.front() == '*' || s.back() == '*'));
}

std::string without_wildcard(const std::string& s) {
  if (s == "*") return "";
  if (s.front() == '*') return s.substr(1);
  if (s.back() == '*') return s.substr(0, s.size() - 1);
  return s;
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
    const std::string bare = without_wildcard(p);
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
    const std::string bare = without_wildcard(n);
    const bool ok = wildcard_ok(n) && (bare.empty() || std::all_of(bare.begin(), bare.end(), [](char c) {
                                         return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
                                       }));
    if (!ok)
      fail(path + "." + key + "[" + std::to_string(i) + "]",
           "'" + printable(n) + "' is not a namespace name (a-z, 0-9 and '-'; '*' leading or ending it)");
  }
  return list;
}

// Service accounts as "<namespace>/<name>".
std::vector<ServiceAccountRef> service_accounts(const json& object, const std::string& path, const char* key) {
  std::vector<ServiceAccountRef> out;
  const auto list = string_list(object, path, key);
  for (size_t i = 0; i < list.size(); ++i) {
    const auto slash = list[i].find('/');
    ServiceAccountRef ref;
    if (slash != std::string::npos) ref = {list[i].substr(0, slash), list[i].substr(slash + 1)};
    if (slash == std::string::npos || !dns_label(ref.namespace_) || !dns_subdomain(ref.name))
      fail(path + "." + key + "[" + std::to_string(i) + "]",
           "'" + printable(list[i]) + "' is not \"<namespace>/<service account>\" (Kubernetes names)");
    out.push_back(std::move(ref));
  }
  return out;
}

std::vector<std::string> account_texts(const std::vector<ServiceAccountRef>& refs) {
  std::vector<std::string> out;
  for (const auto& r : refs) out.push_back(r.namespace_ + "/" + r.name);
  return out;
}

// The fields of a match, by their JSON names: a `from` source holds the source ones, a `to`
// operation the port ones, a clause's match any of them.
PolicyMatch read_match(const json& j, const std::string& path, bool source_fields, bool destination_fields,
                       const char* ports_key, const char* not_ports_key) {
  std::set<std::string> keys;
  if (source_fields)
    keys.insert({"principals", "notPrincipals", "namespaces", "notNamespaces", "serviceAccounts",
                 "notServiceAccounts", source_fields && destination_fields ? "sourceIps" : "ipBlocks",
                 source_fields && destination_fields ? "notSourceIps" : "notIpBlocks"});
  if (destination_fields) keys.insert({ports_key, not_ports_key});
  if (source_fields && destination_fields) keys.insert({"destinationIps", "notDestinationIps"});
  only_keys(j, path, keys);
  const bool mixed = source_fields && destination_fields;
  PolicyMatch m;
  m.principals = principals(j, path, "principals");
  m.not_principals = principals(j, path, "notPrincipals");
  m.namespaces = namespaces(j, path, "namespaces");
  m.not_namespaces = namespaces(j, path, "notNamespaces");
  m.service_accounts = service_accounts(j, path, "serviceAccounts");
  m.not_service_accounts = service_accounts(j, path, "notServiceAccounts");
  m.source_ips = ip_blocks(j, path, mixed ? "sourceIps" : "ipBlocks");
  m.not_source_ips = ip_blocks(j, path, mixed ? "notSourceIps" : "notIpBlocks");
  m.destination_ips = ip_blocks(j, path, "destinationIps");
  m.not_destination_ips = ip_blocks(j, path, "notDestinationIps");
  m.ports = port_list(j, path, ports_key);
  m.not_ports = port_list(j, path, not_ports_key);
  // As istiod: an empty list is a field not set, and a match with none set would silently
  // match everything (or, in a clause, nothing).
  if (m.empty())
    fail(path, std::string("must not be empty: every field is missing or an empty list, which Istio reads as not set") +
                   (!destination_fields   ? " (leave out `from` to match every source)"
                    : !source_fields      ? " (leave out `to` to match every port)"
                                          : ""));
  return m;
}

json write_match(const PolicyMatch& m, bool mixed, const char* ports_key, const char* not_ports_key) {
  json j = json::object();
  put_list(j, "principals", m.principals);
  put_list(j, "notPrincipals", m.not_principals);
  put_list(j, "namespaces", m.namespaces);
  put_list(j, "notNamespaces", m.not_namespaces);
  put_list(j, "serviceAccounts", account_texts(m.service_accounts));
  put_list(j, "notServiceAccounts", account_texts(m.not_service_accounts));
  put_list(j, mixed ? "sourceIps" : "ipBlocks", block_texts(m.source_ips));
  put_list(j, mixed ? "notSourceIps" : "notIpBlocks", block_texts(m.not_source_ips));
  put_list(j, "destinationIps", block_texts(m.destination_ips));
  put_list(j, "notDestinationIps", block_texts(m.not_destination_ips));
  put_list(j, ports_key, m.ports);
  put_list(j, not_ports_key, m.not_ports);
  return j;
}

bool source_only(const PolicyMatch& m) {
  return !m.empty() && m.destination_ips.empty() && m.not_destination_ips.empty() && m.ports.empty() &&
         m.not_ports.empty();
}
bool ports_only(const PolicyMatch& m) {
  PolicyMatch ports;
  ports.ports = m.ports;
  ports.not_ports = m.not_ports;
  return !m.empty() && m == ports;
}

// Whether a rule is Istio's from/to: a clause of sources, then a clause of operations, each
// optional and neither empty.
bool from_to_shape(const PolicyRule& rule) {
  size_t at = 0;
  auto clause_of = [&](bool (*kind)(const PolicyMatch&)) {
    if (at < rule.clauses.size() && !rule.clauses[at].matches.empty() &&
        std::all_of(rule.clauses[at].matches.begin(), rule.clauses[at].matches.end(), kind))
      ++at;
  };
  clause_of(source_only);
  clause_of(ports_only);
  return at == rule.clauses.size();
}

PolicyRule read_rule(const json& rule, const std::string& rp) {
  PolicyRule out;
  if (rule.is_object() && rule.contains("clauses")) {
    only_keys(rule, rp, {"clauses"});
    if (!rule["clauses"].is_array()) fail(rp + ".clauses", "expected a list");
    for (size_t c = 0; c < rule["clauses"].size(); ++c) {
      const std::string cp = rp + ".clauses[" + std::to_string(c) + "]";
      only_keys(rule["clauses"][c], cp, {"matches"});
      const json& matches = rule["clauses"][c].contains("matches") ? rule["clauses"][c]["matches"] : json::array();
      if (!matches.is_array()) fail(cp + ".matches", "expected a list");
      PolicyClause clause;
      for (size_t m = 0; m < matches.size(); ++m)
        clause.matches.push_back(read_match(matches[m], cp + ".matches[" + std::to_string(m) + "]", true, true,
                                            "destinationPorts", "notDestinationPorts"));
      out.clauses.push_back(std::move(clause));
    }
    return out;
  }
  only_keys(rule, rp, {"from", "to"});
  for (const char* key : {"from", "to"})
    if (rule.contains(key) && !rule[key].is_array()) fail(rp + "." + key, "expected a list");
  PolicyClause from, to;
  for (size_t f = 0; rule.contains("from") && f < rule["from"].size(); ++f) {
    const std::string fp = rp + ".from[" + std::to_string(f) + "]";
    only_keys(rule["from"][f], fp, {"source"});
    if (!rule["from"][f].contains("source")) fail(fp + ".source", "missing");
    from.matches.push_back(read_match(rule["from"][f]["source"], fp + ".source", true, false, "", ""));
  }
  for (size_t t = 0; rule.contains("to") && t < rule["to"].size(); ++t) {
    const std::string tp = rp + ".to[" + std::to_string(t) + "]";
    only_keys(rule["to"][t], tp, {"operation"});
    if (!rule["to"][t].contains("operation")) fail(tp + ".operation", "missing");
    to.matches.push_back(read_match(rule["to"][t]["operation"], tp + ".operation", false, true, "ports", "notPorts"));
  }
  if (!from.matches.empty()) out.clauses.push_back(std::move(from));
  if (!to.matches.empty()) out.clauses.push_back(std::move(to));
  return out;
}

json write_rule(const PolicyRule& rule) {
  json r = json::object();
  if (!from_to_shape(rule)) {
    r["clauses"] = json::array();
    for (const auto& clause : rule.clauses) {
      json matches = json::array();
      for (const auto& m : clause.matches) matches.push_back(write_match(m, true, "destinationPorts", "notDestinationPorts"));
      r["clauses"].push_back({{"matches", matches}});
    }
    return r;
  }
  for (const auto& clause : rule.clauses)
    for (const auto& m : clause.matches) {
      if (source_only(m)) r["from"].push_back({{"source", write_match(m, false, "ports", "notPorts")}});
      else r["to"].push_back({{"operation", write_match(m, false, "ports", "notPorts")}});
    }
  return r;
}

// The scope a policy has when the file does not say: Istio's rules for a selector and the root
// namespace.
AuthorizationPolicy::Scope implied_scope(const AuthorizationPolicy& p) {
  if (!p.selector.empty()) return AuthorizationPolicy::Scope::WorkloadSelector;
  if (p.namespace_ == kRootNamespace) return AuthorizationPolicy::Scope::Global;
  return AuthorizationPolicy::Scope::Namespace;
}

}  // namespace

bool PolicyMatch::empty() const {
  return principals.empty() && not_principals.empty() && namespaces.empty() && not_namespaces.empty() &&
         service_accounts.empty() && not_service_accounts.empty() && source_ips.empty() && not_source_ips.empty() &&
         destination_ips.empty() && not_destination_ips.empty() && ports.empty() && not_ports.empty();
}

const char* to_string(AuthorizationPolicy::Scope scope) {
  switch (scope) {
    case AuthorizationPolicy::Scope::Global: return "GLOBAL";
    case AuthorizationPolicy::Scope::Namespace: return "NAMESPACE";
    case AuthorizationPolicy::Scope::WorkloadSelector: return "WORKLOAD_SELECTOR";
  }
  return "?";
}

AuthorizationPolicy parse_policy(const json& j, const std::string& path) {
  only_keys(j, path, {"name", "namespace", "action", "selector", "scope", "dryRun", "rules"});
  AuthorizationPolicy p;
  p.name = name_field(j, path, "name", true, NameKind::Subdomain);
  p.namespace_ = name_field(j, path, "namespace", true, NameKind::Label);
  const std::string action = string_field(j, path, "action", false);
  if (action.empty() || action == "ALLOW") p.action = AuthorizationPolicy::Action::Allow;
  else if (action == "DENY") p.action = AuthorizationPolicy::Action::Deny;
  else fail(path + ".action", "expected \"ALLOW\" or \"DENY\", got \"" + printable(action) + "\"");
  if (j.contains("selector")) {
    only_keys(j["selector"], path + ".selector", {"workloads"});
    p.selector = string_list(j["selector"], path + ".selector", "workloads");
    for (size_t i = 0; i < p.selector.size(); ++i)
      if (!dns_subdomain(p.selector[i]))
        fail(path + ".selector.workloads[" + std::to_string(i) + "]",
             "'" + printable(p.selector[i]) + "' is not a workload name (a DNS-1123 subdomain)");
  }
  p.scope = implied_scope(p);
  if (j.contains("scope")) {
    const std::string scope = string_field(j, path, "scope", false);
    if (scope == "GLOBAL") p.scope = AuthorizationPolicy::Scope::Global;
    else if (scope == "NAMESPACE") p.scope = AuthorizationPolicy::Scope::Namespace;
    else if (scope == "WORKLOAD_SELECTOR") p.scope = AuthorizationPolicy::Scope::WorkloadSelector;
    else fail(path + ".scope", "expected GLOBAL, NAMESPACE or WORKLOAD_SELECTOR, got \"" + printable(scope) + "\"");
    if (!p.selector.empty() && p.scope != AuthorizationPolicy::Scope::WorkloadSelector)
      fail(path + ".scope", "a policy with a selector has scope WORKLOAD_SELECTOR, not " + scope);
  }
  p.dry_run = bool_field(j, path, "dryRun");
  if (j.contains("rules") && !j["rules"].is_array()) fail(path + ".rules", "expected a list");
  for (size_t r = 0; j.contains("rules") && r < j["rules"].size(); ++r)
    p.rules.push_back(read_rule(j["rules"][r], path + ".rules[" + std::to_string(r) + "]"));
  return p;
}

json to_json(const AuthorizationPolicy& p) {
  json rules = json::array();
  for (const auto& rule : p.rules) rules.push_back(write_rule(rule));
  json j = {{"name", p.name},
            {"namespace", p.namespace_},
            {"action", p.action == AuthorizationPolicy::Action::Deny ? "DENY" : "ALLOW"},
            {"rules", rules}};
  if (!p.selector.empty()) j["selector"] = {{"workloads", p.selector}};
  if (p.scope != implied_scope(p)) j["scope"] = to_string(p.scope);
  if (p.dry_run) j["dryRun"] = true;
  return j;
}

}  // namespace zmesh
