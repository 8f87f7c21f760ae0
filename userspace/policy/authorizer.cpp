// The L4 authorizer (see include/zmesh/policy.h).
#include "zmesh/policy.h"

#include <algorithm>
#include <tuple>

#include "zmesh/address.h"

namespace zmesh {
namespace {

using boost::asio::ip::address;

// Istio's positive and negative lists of one field: the positive one (when given) must have a
// hit, the negative one (when given) none.
template <typename T, typename Predicate>
bool field_matches(const std::vector<T>& positive, const std::vector<T>& negative, Predicate hit) {
  if (!positive.empty() && std::none_of(positive.begin(), positive.end(), hit)) return false;
  return negative.empty() || std::none_of(negative.begin(), negative.end(), hit);
}

// What a match is compared with. A plaintext source has no principal, namespace or service
// account: a positive list of those never matches it, and a negative one never excludes it.
struct Facts {
  std::optional<std::string> principal, namespace_;
  std::optional<ServiceAccountRef> account;
  address source_ip, destination_ip;
  uint16_t port;
};

bool match_matches(const PolicyMatch& m, const Facts& f) {
  auto pattern_hit = [](const std::optional<std::string>& value) {
    return [&value](const std::string& pattern) { return value && matches_pattern(pattern, *value); };
  };
  return field_matches(m.principals, m.not_principals, pattern_hit(f.principal)) &&
         field_matches(m.namespaces, m.not_namespaces, pattern_hit(f.namespace_)) &&
         field_matches(m.service_accounts, m.not_service_accounts,
                       [&](const ServiceAccountRef& a) { return f.account && a == *f.account; }) &&
         field_matches(m.source_ips, m.not_source_ips, [&](const IpBlock& b) { return b.contains(f.source_ip); }) &&
         field_matches(m.destination_ips, m.not_destination_ips,
                       [&](const IpBlock& b) { return b.contains(f.destination_ip); }) &&
         field_matches(m.ports, m.not_ports, [&](uint16_t p) { return p == f.port; });
}

// A clause matches when any of its matches does (an empty match matches nothing; a clause
// without matches always); a rule when every clause does.
bool rule_matches(const PolicyRule& rule, const Facts& f) {
  return std::all_of(rule.clauses.begin(), rule.clauses.end(), [&](const PolicyClause& c) {
    return c.matches.empty() ||
           std::any_of(c.matches.begin(), c.matches.end(), [&](const PolicyMatch& m) { return !m.empty() && match_matches(m, f); });
  });
}

Facts facts_of(const AccessRequest& r) {
  Facts f;
  if (r.source) {
    f.principal = r.source->trust_domain + "/ns/" + r.source->namespace_ + "/sa/" + r.source->service_account;
    f.namespace_ = r.source->namespace_;
    f.account = ServiceAccountRef{r.source->namespace_, r.source->service_account};
  }
  f.source_ip = unmapped(r.source_ip);
  f.destination_ip = r.destination_ip.is_unspecified() && !r.destination->config.ips.empty()
                         ? unmapped(r.destination->config.ips.front())
                         : unmapped(r.destination_ip);
  f.port = r.port;
  return f;
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

// A selector names workloads exactly (Istio's matchLabels; in the root namespace, those names in
// every namespace); istiod instead lists a workload's WORKLOAD_SELECTOR policies on the workload.
bool applies_to(const AuthorizationPolicy& p, const Workload& w) {
  switch (p.scope) {
    case AuthorizationPolicy::Scope::Global: return true;
    case AuthorizationPolicy::Scope::Namespace: return p.namespace_ == w.config.namespace_;
    case AuthorizationPolicy::Scope::WorkloadSelector: {
      const auto& listed = w.config.authorization_policies;
      if (!listed.empty() && std::find(listed.begin(), listed.end(), key_of(p)) != listed.end()) return true;
      return (p.namespace_ == kRootNamespace || p.namespace_ == w.config.namespace_) &&
             std::find(p.selector.begin(), p.selector.end(), w.config.name) != p.selector.end();
    }
  }
  return false;
}

Authorizer::Authorizer(const std::vector<AuthorizationPolicy>& policies) {
  for (const auto& p : policies) put(std::make_shared<const AuthorizationPolicy>(p));
}

// The scoped_ list a policy belongs to; "\n" (no namespace has it): none, the workloads list it.
std::string Authorizer::scope_key(const AuthorizationPolicy& p) {
  switch (p.scope) {
    case AuthorizationPolicy::Scope::Global: return "";
    case AuthorizationPolicy::Scope::Namespace: return p.namespace_;
    case AuthorizationPolicy::Scope::WorkloadSelector: return p.selector.empty() ? "\n" : p.namespace_;
  }
  return "\n";
}

void Authorizer::index(const Entry& entry, bool add) {
  const AuthorizationPolicy& p = *entry.policy;
  const std::string key = key_of(p);
  auto by_key = [](const Entry& a, const Entry& b) {
    return std::tie(a.policy->namespace_, a.policy->name) < std::tie(b.policy->namespace_, b.policy->name);
  };
  if (const std::string at = scope_key(p); at != "\n") {
    const auto* now = scoped_.find(at);
    auto list = std::make_shared<std::vector<Entry>>(now ? **now : std::vector<Entry>{});
    std::erase_if(*list, [&](const Entry& e) { return e.id == entry.id; });
    if (add) list->insert(std::upper_bound(list->begin(), list->end(), entry, by_key), entry);
    if (list->empty()) scoped_.erase(at);
    else scoped_.put(at, std::move(list));
  }
  if (p.action == AuthorizationPolicy::Action::Deny && !p.dry_run) {
    auto denies = std::make_shared<std::map<std::string, Entry>>(denies_ ? *denies_ : std::map<std::string, Entry>{});
    if (add) (*denies)[key] = entry;
    else denies->erase(key);
    denies_ = std::move(denies);
  }
}

void Authorizer::put(std::shared_ptr<const AuthorizationPolicy> policy) {
  const std::string key = key_of(*policy);
  uint32_t id = next_id_;
  if (const Entry* old = by_key_.find(key)) {
    id = old->id;
    index(*old, false);
  } else {
    ++next_id_;
  }
  Entry entry{std::move(policy), id};
  by_key_.put(key, entry);
  index(entry, true);
}

void Authorizer::remove(const std::string& key) {
  if (const Entry* old = by_key_.find(key)) {
    index(*old, false);
    by_key_.erase(key);
  }
}

std::vector<const Authorizer::Entry*> Authorizer::policies() const {
  std::vector<const Entry*> out;
  out.reserve(by_key_.size());
  by_key_.for_each([&](const std::string&, const Entry& e) { out.push_back(&e); });
  std::sort(out.begin(), out.end(), [](const Entry* a, const Entry* b) {
    return std::tie(a->policy->namespace_, a->policy->name) < std::tie(b->policy->namespace_, b->policy->name);
  });
  return out;
}

AccessDecision Authorizer::decide(const AccessRequest& r) const {
  const WorkloadConfig& destination = r.destination->config;
  // The policies that can apply: GLOBAL ones, the destination's namespace's and the root
  // namespace's (a selector there selects in every namespace), and those it lists; by key.
  std::vector<const AuthorizationPolicy*> candidates;
  int sources = 0;  // each list is in key order already: one needs no sort
  auto add_scope = [&](const std::string& at) {
    if (const auto* list = scoped_.find(at)) {
      ++sources;
      for (const auto& e : **list) candidates.push_back(e.policy.get());
    }
  };
  add_scope("");
  add_scope(destination.namespace_);
  if (destination.namespace_ != kRootNamespace) add_scope(kRootNamespace);
  sources += destination.authorization_policies.empty() ? 0 : 2;
  for (const auto& key : destination.authorization_policies)
    if (const Entry* e = by_key_.find(key)) candidates.push_back(e->policy.get());
  if (sources > 1) {
    std::sort(candidates.begin(), candidates.end(), [](const AuthorizationPolicy* a, const AuthorizationPolicy* b) {
      return std::tie(a->namespace_, a->name) < std::tie(b->namespace_, b->name);
    });
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  }
  if (candidates.empty()) return {true, "no policy applies"};
  const Facts facts = facts_of(r);

  auto enforced = [&](const AuthorizationPolicy& p, AuthorizationPolicy::Action action) {
    return p.action == action && !p.dry_run && applies_to(p, *r.destination);
  };
  auto any_rule = [&](const AuthorizationPolicy& p) {
    return std::any_of(p.rules.begin(), p.rules.end(), [&](const PolicyRule& rule) { return rule_matches(rule, facts); });
  };
  for (const auto* p : candidates)
    if (enforced(*p, AuthorizationPolicy::Action::Deny) && any_rule(*p))
      return {false, "denied by DENY policy " + key_of(*p)};
  bool any_allow = false;
  for (const auto* p : candidates) {
    if (!enforced(*p, AuthorizationPolicy::Action::Allow)) continue;
    any_allow = true;
    if (any_rule(*p)) return {true, "allowed by ALLOW policy " + key_of(*p)};
  }
  if (any_allow) return {false, "no ALLOW policy matched"};
  return {true, "no policy applies"};
}

std::vector<KernelDeny> Authorizer::kernel_denies(const Mesh& mesh) const {
  auto sources_only = [](const PolicyMatch& m) {
    PolicyMatch only;
    only.source_ips = m.source_ips;
    return !m.source_ips.empty() && m == only;
  };
  auto ports_only = [](const PolicyMatch& m) {
    PolicyMatch only;
    only.ports = m.ports;
    return !m.ports.empty() && m == only;
  };
  auto clause_of = [](const PolicyClause& c, auto kind) {
    return !c.matches.empty() && std::all_of(c.matches.begin(), c.matches.end(), kind);
  };
  const IpBlock any4{boost::asio::ip::address_v4::any(), 0}, any6{boost::asio::ip::address_v6::any(), 0};
  std::vector<KernelDeny> out;
  if (!denies_) return out;
  const auto local = mesh.local_workloads();
  for (const auto& [key, entry] : *denies_) {
    const AuthorizationPolicy& p = *entry.policy;
    for (const auto& rule : p.rules) {
      // At most one clause of sources and one of ports, nothing else: what the kernel's
      // (source block, destination, port) entries can say.
      const PolicyClause *sources = nullptr, *ports = nullptr;
      bool expressible = true;
      for (const auto& clause : rule.clauses) {
        if (!sources && clause_of(clause, sources_only)) sources = &clause;
        else if (!ports && clause_of(clause, ports_only)) ports = &clause;
        else expressible = false;
      }
      if (!expressible) continue;
      std::vector<IpBlock> blocks = {any4, any6};
      if (sources) {
        blocks.clear();
        for (const auto& m : sources->matches) blocks.insert(blocks.end(), m.source_ips.begin(), m.source_ips.end());
      }
      std::vector<uint16_t> port_list = {0};
      if (ports) {
        port_list.clear();
        for (const auto& m : ports->matches) port_list.insert(port_list.end(), m.ports.begin(), m.ports.end());
      }
      for (const Workload* w : local) {
        if (!applies_to(p, *w)) continue;
        for (const auto& ip : w->config.ips)
          for (const auto& block : blocks)
            if (unmapped(ip).is_v4() == block.address.is_v4())
              for (uint16_t port : port_list) out.push_back({block, unmapped(ip), port, entry.id});
      }
    }
  }
  return out;
}

}  // namespace zmesh
