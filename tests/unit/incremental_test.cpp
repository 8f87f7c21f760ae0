// The mesh and the policies are changed entry by entry (issue 16, item 9: a cluster of 50,000
// workloads cannot be rebuilt per change), so the indexes they keep must never drift from what
// a whole build of the same entries gives. These tests make long random sequences of puts and
// removals — addresses that collide, services naming endpoints that are not there, policies of
// every scope — and after every step compare the Mesh and the Authorizer changed in place with
// ones built whole from the same entries: same refusals, same lookups, same decisions.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "zmesh/mesh.h"
#include "zmesh/policy.h"

namespace zmesh {
namespace {

using boost::asio::ip::address;
using boost::asio::ip::make_address;

// A small world so that collisions are common: 12 workload names in 2 namespaces, 5 services,
// 40 addresses shared by workload IPs and service VIPs.
struct World {
  std::mt19937 rng{20261201};
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }
  address ip(int i) { return make_address("10.0." + std::to_string(i / 200) + "." + std::to_string(1 + i % 200)); }
  std::string ns() { return pick(2) ? "a" : "b"; }
  std::string service_key(int s) { return std::string(s % 2 ? "a" : "b") + "/svc" + std::to_string(s) + ".cluster"; }

  WorkloadConfig workload() {
    WorkloadConfig w;
    w.name = "w" + std::to_string(pick(6));
    w.namespace_ = ns();
    w.service_account = "sa" + std::to_string(pick(3));
    w.node = pick(3) ? "n2" : "n1";
    for (int i = 0, n = 1 + pick(2); i < n; ++i) w.ips.push_back(ip(pick(40)));
    if (pick(2)) w.origin = WorkloadConfig::Origin::Xds;
    for (int i = 0, n = pick(3); i < n; ++i) w.services[service_key(pick(5))] = pick(2) ? PortMap{{80, 9000}} : PortMap{};
    if (pick(4) == 0) w.authorization_policies.push_back(ns() + "/p" + std::to_string(pick(8)));
    return w;
  }
  ServiceConfig service() {
    const int s = pick(5);
    ServiceConfig c;
    c.namespace_ = s % 2 ? "a" : "b";
    c.name = "svc" + std::to_string(s);
    c.hostname = "svc" + std::to_string(s) + ".cluster";
    for (int i = 0, n = pick(3); i < n; ++i) c.vips.push_back(ip(pick(40)));
    c.ports = {{80, 8080}, {443, 8443}};
    if (pick(3) == 0) c.endpoints.push_back("w" + std::to_string(pick(6)));  // may not be there
    return c;
  }
  AuthorizationPolicy policy() {
    AuthorizationPolicy p;
    p.namespace_ = pick(4) == 0 ? kRootNamespace : ns();
    p.name = "p" + std::to_string(pick(8));
    p.action = pick(2) ? AuthorizationPolicy::Action::Deny : AuthorizationPolicy::Action::Allow;
    const int scope = pick(3);
    p.scope = scope == 0 ? AuthorizationPolicy::Scope::Global
              : scope == 1 ? AuthorizationPolicy::Scope::Namespace
                           : AuthorizationPolicy::Scope::WorkloadSelector;
    if (p.scope == AuthorizationPolicy::Scope::WorkloadSelector && pick(2)) p.selector = {"w" + std::to_string(pick(6))};
    p.dry_run = pick(6) == 0;
    PolicyMatch m;
    switch (pick(4)) {
      case 0: m.namespaces = {ns()}; break;
      case 1: m.source_ips = {IpBlock{ip(pick(40)), 32}}; break;
      case 2: m.ports = {static_cast<uint16_t>(80 + pick(2))}; break;
      default: m.principals = {"cluster.local/ns/" + ns() + "/sa/sa" + std::to_string(pick(3))}; break;
    }
    p.rules = {PolicyRule{{PolicyClause{{m}}}}};
    return p;
  }
};

template <typename T>
std::string name_of(const T* x) {
  return x ? key_of(x->config) : "-";
}

// Everything a connection can ask the mesh, answered by both.
void expect_same(const Mesh& changed, const Mesh& whole, World& world, const std::string& step) {
  for (int i = 0; i < 40; ++i) {
    const address ip = world.ip(i);
    ASSERT_EQ(name_of(changed.by_ip(ip)), name_of(whole.by_ip(ip))) << step << " by_ip " << ip;
    ASSERT_EQ(name_of(changed.service_by_vip(ip)), name_of(whole.service_by_vip(ip))) << step << " vip " << ip;
  }
  auto keys = [](const auto& list) {
    std::vector<std::string> out;
    for (const auto* x : list) out.push_back(key_of(x->config));
    return out;
  };
  ASSERT_EQ(keys(changed.workloads()), keys(whole.workloads())) << step;
  ASSERT_EQ(keys(changed.services()), keys(whole.services())) << step;
  ASSERT_EQ(keys(changed.local_workloads()), keys(whole.local_workloads())) << step;
  ASSERT_EQ(keys(changed.workloads_here()), keys(whole.workloads_here())) << step;
  for (const Service* s : whole.services()) {
    const Service* mine = changed.service(s->key);
    ASSERT_NE(mine, nullptr) << step << " " << s->key;
    ASSERT_EQ(keys(mine->endpoints), keys(s->endpoints)) << step << " endpoints of " << s->key;
    for (const Workload* e : mine->endpoints) ASSERT_EQ(e, changed.workload(key_of(e->config))) << step << " stale endpoint";
  }
  for (const Workload* w : whole.workloads()) {
    const Workload* mine = changed.workload(key_of(w->config));
    ASSERT_EQ(mine->identity.uri(), w->identity.uri()) << step;
    for (uint16_t port : {8080, 8443, 9000})
      ASSERT_EQ(changed.service_for(*mine, port) ? changed.service_for(*mine, port)->key : "-",
                whole.service_for(*w, port) ? whole.service_for(*w, port)->key : "-")
          << step << " service_for " << key_of(w->config) << ":" << port;
  }
}

TEST(Incremental, AMeshChangedEntryByEntryEqualsOneBuiltWhole) {
  World world;
  std::map<std::string, WorkloadConfig> workloads;  // what the mesh holds, by key
  std::map<std::string, ServiceConfig> services;
  Mesh mesh("cluster.local", "n1");
  int refused = 0, applied = 0;
  for (int step = 0; step < 3000; ++step) {
    Mesh next = mesh;  // shares everything with `mesh`, which must not change below
    auto next_workloads = workloads;
    auto next_services = services;
    std::string changed_error;
    try {  // a put refuses an entry listing one address twice; settle() the rest
      for (int edit = 0, n = 1 + world.pick(3); edit < n; ++edit) {
        switch (world.pick(4)) {
          case 0: case 1: {
            auto w = world.workload();
            next_workloads[key_of(w)] = w;
            next.put(std::make_shared<const WorkloadConfig>(w));
            break;
          }
          case 2: {
            if (world.pick(2)) {
              auto s = world.service();
              next_services[service_key(s)] = s;
              next.put(std::make_shared<const ServiceConfig>(s));
            } else {
              const std::string key = world.service_key(world.pick(5));
              next_services.erase(key);
              next.remove_service(key);
            }
            break;
          }
          default: {
            const std::string key = world.ns() + "/w" + std::to_string(world.pick(6));
            next_workloads.erase(key);
            next.remove_workload(key);
          }
        }
      }
      next.settle();
    } catch (const ConfigError& e) {
      changed_error = e.what();
    }
    MeshConfig config;
    for (const auto& [k, w] : next_workloads) config.workloads.push_back(w);
    for (const auto& [k, s] : next_services) config.services.push_back(s);
    std::string whole_error;
    std::optional<Mesh> whole;
    try {
      whole.emplace(config, "cluster.local", "n1");
    } catch (const ConfigError& e) {
      whole_error = e.what();
    }
    const std::string at = "step " + std::to_string(step);
    ASSERT_EQ(changed_error.empty(), whole_error.empty()) << at << ": changed: " << changed_error << " whole: " << whole_error;
    if (!whole) {
      ++refused;  // the last good mesh stays, untouched by the refused edits
      expect_same(mesh, Mesh([&] {
                    MeshConfig c;
                    for (const auto& [k, w] : workloads) c.workloads.push_back(w);
                    for (const auto& [k, s] : services) c.services.push_back(s);
                    return c;
                  }(), "cluster.local", "n1"),
                  world, at + " (after a refusal)");
      continue;
    }
    ++applied;
    mesh = next;
    workloads = std::move(next_workloads);
    services = std::move(next_services);
    expect_same(mesh, *whole, world, at);
  }
  // Both kinds of step were exercised many times.
  EXPECT_GT(refused, 300);
  EXPECT_GT(applied, 300);
}

TEST(Incremental, PoliciesChangedOneByOneDecideAsTheWholeSet) {
  World world;
  std::map<std::string, AuthorizationPolicy> policies;
  Authorizer authorizer;
  // Destinations of every namespace and name, some listing policies as istiod does.
  std::vector<std::shared_ptr<const Workload>> destinations;
  for (int i = 0; i < 30; ++i) {
    auto w = std::make_shared<WorkloadConfig>(world.workload());
    w->node = "n1";
    w->namespace_ = i % 5 == 0 ? kRootNamespace : w->namespace_;
    destinations.push_back(std::make_shared<const Workload>(w, SpiffeId{"cluster.local", w->namespace_, w->service_account}, true));
  }
  MeshConfig local;
  for (const auto& d : destinations) local.workloads.push_back(d->config);
  std::optional<Mesh> mesh;
  for (auto& w : local.workloads) w.ips = {world.ip(static_cast<int>(&w - local.workloads.data()))};
  mesh.emplace(local, "cluster.local", "n1");
  auto kernel = [](const std::vector<KernelDeny>& denies) {  // ids differ by construction order
    std::set<std::string> out;
    for (const auto& d : denies) out.insert(d.source.to_string() + ">" + d.destination.to_string() + ":" + std::to_string(d.port));
    return out;
  };
  int decisions = 0, denied = 0;
  for (int step = 0; step < 1000; ++step) {
    if (world.pick(3)) {
      auto p = world.policy();
      policies[key_of(p)] = p;
      authorizer.put(std::make_shared<const AuthorizationPolicy>(p));
    } else {
      const std::string key = world.ns() + "/p" + std::to_string(world.pick(8));
      policies.erase(key);
      authorizer.remove(key);
    }
    std::vector<AuthorizationPolicy> all;
    for (const auto& [k, p] : policies) all.push_back(p);
    const Authorizer whole(all);
    ASSERT_EQ(authorizer.size(), whole.size());
    for (const auto& destination : destinations)
      for (const char* source_ns : {"a", "b"})
        for (uint16_t port : {80, 81}) {
          const AccessRequest r{SpiffeId{"cluster.local", source_ns, "sa" + std::to_string(world.pick(3))},
                                world.ip(world.pick(40)), destination.get(), port};
          const auto a = authorizer.decide(r), b = whole.decide(r);
          ASSERT_EQ(a.allowed, b.allowed) << "step " << step << ": " << a.reason << " / " << b.reason;
          ASSERT_EQ(a.reason, b.reason) << "step " << step;
          // And the index finds every policy that applies: the same decision from exactly
          // those, made GLOBAL so that no index is needed to find them.
          std::vector<AuthorizationPolicy> applicable;
          for (auto p : all)
            if (applies_to(p, *destination)) {
              p.scope = AuthorizationPolicy::Scope::Global;
              applicable.push_back(std::move(p));
            }
          const auto c = Authorizer(applicable).decide(r);
          ASSERT_EQ(a.reason, c.reason) << "step " << step << " to " << key_of(destination->config);
          ++decisions;
          denied += !a.allowed;
        }
    ASSERT_EQ(kernel(authorizer.kernel_denies(*mesh)), kernel(whole.kernel_denies(*mesh))) << "step " << step;
  }
  EXPECT_GT(denied, decisions / 10);
  EXPECT_LT(denied, decisions - decisions / 10);
}

// A copy shares its entries; changing it leaves the original as it was.
TEST(Incremental, AChangedCopyLeavesTheOriginalAlone) {
  SharedMap<std::string, int> a;
  for (int i = 0; i < 5000; ++i) a.put("k" + std::to_string(i), i);
  SharedMap<std::string, int> b = a;
  b.put("k7", -7);
  b.erase("k8");
  b.put("new", 1);
  EXPECT_EQ(*a.find("k7"), 7);
  EXPECT_NE(a.find("k8"), nullptr);
  EXPECT_EQ(a.find("new"), nullptr);
  EXPECT_EQ(a.size(), 5000u);
  EXPECT_EQ(*b.find("k7"), -7);
  EXPECT_EQ(b.find("k8"), nullptr);
  EXPECT_EQ(b.size(), 5000u);
  std::map<std::string, int> changed, removed;
  SharedMap<std::string, int>::diff(
      a, b, [&](const std::string& k, int v) { changed[k] = v; }, [&](const std::string& k, int v) { removed[k] = v; });
  EXPECT_EQ(changed, (std::map<std::string, int>{{"k7", -7}, {"new", 1}}));
  EXPECT_EQ(removed, (std::map<std::string, int>{{"k8", 8}}));
}

}  // namespace
}  // namespace zmesh
