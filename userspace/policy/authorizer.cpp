// The L4 authorizer (see include/zmesh/policy.h).
#include "zmesh/address.h"
#include "zmesh/policy.h"

#include <algorithm>

namespace zmesh {
namespace {

bool any_pattern(const std::vector<std::string>& patterns, const std::string& value) {
  return std::any_of(patterns.begin(), patterns.end(), [&](const auto& p) { return matches_pattern(p, value); });
}

bool any_block(const std::vector<IpBlock>& blocks, const boost::asio::ip::address& ip) {
  return std::any_of(blocks.begin(), blocks.end(), [&](const auto& b) { return b.contains(ip); });
}

// Every field given must match; absent fields match anything. A plaintext source has no
// principal or namespace, so a source that names one does not match it.
bool source_matches(const PolicySource& s, const AccessRequest& r) {
  const std::string principal =
      r.source ? r.source->trust_domain + "/ns/" + r.source->namespace_ + "/sa/" + r.source->service_account : "";
  const std::string ns = r.source ? r.source->namespace_ : "";
  const auto ip = unmapped(r.source_ip);
  if (!s.principals.empty() && (!r.source || !any_pattern(s.principals, principal))) return false;
  if (!s.not_principals.empty() && r.source && any_pattern(s.not_principals, principal)) return false;
  if (!s.namespaces.empty() && (!r.source || !any_pattern(s.namespaces, ns))) return false;
  if (!s.not_namespaces.empty() && r.source && any_pattern(s.not_namespaces, ns)) return false;
  if (!s.ip_blocks.empty() && !any_block(s.ip_blocks, ip)) return false;
  if (!s.not_ip_blocks.empty() && any_block(s.not_ip_blocks, ip)) return false;
  return true;
}

bool operation_matches(const PolicyOperation& o, uint16_t port) {
  auto has = [port](const std::vector<uint16_t>& ports) { return std::find(ports.begin(), ports.end(), port) != ports.end(); };
  if (!o.ports.empty() && !has(o.ports)) return false;
  if (!o.not_ports.empty() && has(o.not_ports)) return false;
  return true;
}

bool rule_matches(const PolicyRule& rule, const AccessRequest& r) {
  const bool from = rule.from.empty() ||
                    std::any_of(rule.from.begin(), rule.from.end(), [&](const auto& s) { return source_matches(s, r); });
  const bool to = rule.to.empty() ||
                  std::any_of(rule.to.begin(), rule.to.end(), [&](const auto& o) { return operation_matches(o, r.port); });
  return from && to;
}

// A selector names workloads exactly (Istio's matchLabels); in the root namespace it selects
// those names in every namespace.
bool applies_to(const AuthorizationPolicy& p, const Workload& w) {
  if (p.namespace_ != Authorizer::kRootNamespace && p.namespace_ != w.config.namespace_) return false;
  return p.selector.empty() || std::find(p.selector.begin(), p.selector.end(), w.config.name) != p.selector.end();
}

}  // namespace

bool matches_pattern(const std::string& pattern, const std::string& value) {
  if (pattern == "*") return true;
  if (!pattern.empty() && pattern.back() == '*')
    return value.compare(0, pattern.size() - 1, pattern, 0, pattern.size() - 1) == 0;
  if (!pattern.empty() && pattern.front() == '*')
    return value.size() >= pattern.size() - 1 &&
           value.compare(value.size() - (pattern.size() - 1), pattern.size() - 1, pattern, 1) == 0;
  return pattern == value;
}

Authorizer::Authorizer(std::vector<AuthorizationPolicy> policies) : policies_(std::move(policies)) {}

AccessDecision Authorizer::decide(const AccessRequest& r) const {
  bool any_allow = false;
  for (const auto& p : policies_) {
    if (p.action != AuthorizationPolicy::Action::Deny || !applies_to(p, *r.destination)) continue;
    for (const auto& rule : p.rules)
      if (rule_matches(rule, r)) return {false, "denied by DENY policy " + p.namespace_ + "/" + p.name};
  }
  for (const auto& p : policies_) {
    if (p.action != AuthorizationPolicy::Action::Allow || !applies_to(p, *r.destination)) continue;
    any_allow = true;
    for (const auto& rule : p.rules)
      if (rule_matches(rule, r)) return {true, "allowed by ALLOW policy " + p.namespace_ + "/" + p.name};
  }
  if (any_allow) return {false, "no ALLOW policy matched"};
  return {true, "no policy applies"};
}

std::vector<KernelDeny> Authorizer::kernel_denies(const Mesh& mesh) const {
  auto ip_only = [](const PolicySource& s) {
    return !s.ip_blocks.empty() && s.principals.empty() && s.not_principals.empty() && s.namespaces.empty() &&
           s.not_namespaces.empty() && s.not_ip_blocks.empty();
  };
  auto ports_only = [](const PolicyOperation& o) { return !o.ports.empty() && o.not_ports.empty(); };
  const IpBlock any4{boost::asio::ip::address_v4::any(), 0}, any6{boost::asio::ip::address_v6::any(), 0};
  std::vector<KernelDeny> out;
  for (size_t i = 0; i < policies_.size(); ++i) {
    const auto& p = policies_[i];
    if (p.action != AuthorizationPolicy::Action::Deny) continue;
    for (const auto& rule : p.rules) {
      if (!std::all_of(rule.from.begin(), rule.from.end(), ip_only) ||
          !std::all_of(rule.to.begin(), rule.to.end(), ports_only))
        continue;
      std::vector<IpBlock> sources;
      for (const auto& s : rule.from) sources.insert(sources.end(), s.ip_blocks.begin(), s.ip_blocks.end());
      if (rule.from.empty()) sources = {any4, any6};
      std::vector<uint16_t> ports;
      for (const auto& o : rule.to) ports.insert(ports.end(), o.ports.begin(), o.ports.end());
      if (rule.to.empty()) ports = {0};
      for (const Workload* w : mesh.local_workloads()) {
        if (!applies_to(p, *w)) continue;
        for (const auto& ip : w->config.ips)
          for (const auto& source : sources)
            if (unmapped(ip).is_v4() == source.address.is_v4())
              for (uint16_t port : ports) out.push_back({source, unmapped(ip), port, i});
      }
    }
  }
  return out;
}

}  // namespace zmesh
