// L4 authorization with Istio AuthorizationPolicy semantics, table-driven, and the config errors
// of policies named with their JSON path.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "zmesh/policy.h"

namespace zmesh {
namespace {

using boost::asio::ip::make_address;

MeshConfig config_with(const std::string& policies) {
  return parse_config(R"({"workloads": [
      {"name": "web", "namespace": "shop", "serviceAccount": "web", "node": "n1", "workloadIps": ["10.0.1.2"]},
      {"name": "db", "namespace": "shop", "serviceAccount": "db", "node": "n1", "workloadIps": ["10.0.1.3"]},
      {"name": "other", "namespace": "blog", "serviceAccount": "other", "node": "n1", "workloadIps": ["10.0.1.4"]}],
    "policies": )" + policies + "}");
}

TEST(Authorizer, DenyFirstThenAllowThenDefaultAllow) {
  const auto config = config_with(R"([
    {"name": "no-blog", "namespace": "shop", "action": "DENY",
     "rules": [{"from": [{"source": {"namespaces": ["blog"]}}]}]},
    {"name": "db-from-web", "namespace": "shop", "action": "ALLOW", "selector": {"workloads": ["db"]},
     "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/web"]}}],
                "to": [{"operation": {"ports": ["5432"]}}]}]},
    {"name": "no-lan", "namespace": "shop", "action": "DENY", "selector": {"workloads": ["web"]},
     "rules": [{"from": [{"source": {"ipBlocks": ["192.168.0.0/16"]}}], "to": [{"operation": {"notPorts": [443]}}]}]}
  ])");
  const Mesh mesh(config, "cluster.local", "n1");
  const Authorizer authorizer(config.policies);
  const auto* web = mesh.by_ip(make_address("10.0.1.2"));
  const auto* db = mesh.by_ip(make_address("10.0.1.3"));
  const auto* other = mesh.by_ip(make_address("10.0.1.4"));
  const SpiffeId web_id{"cluster.local", "shop", "web"}, blog_id{"cluster.local", "blog", "other"};
  struct Case {
    const char* description;
    AccessRequest request;
    bool allowed;
    const char* reason;
  } cases[] = {
      {"no policy selects 'other': allowed", {web_id, make_address("10.0.1.2"), other, 80}, true, "no policy applies"},
      {"blog namespace to web: DENY wins", {blog_id, make_address("10.0.1.4"), web, 80}, false, "shop/no-blog"},
      {"web to db on 5432: ALLOW matches", {web_id, make_address("10.0.1.2"), db, 5432}, true, "shop/db-from-web"},
      {"web to db on another port: no ALLOW matched", {web_id, make_address("10.0.1.2"), db, 22}, false,
       "no ALLOW policy matched"},
      {"plaintext to db: no principal, no ALLOW", {std::nullopt, make_address("10.0.1.9"), db, 5432}, false,
       "no ALLOW policy matched"},
      {"blog to db: DENY before ALLOW", {blog_id, make_address("10.0.1.4"), db, 5432}, false, "shop/no-blog"},
      {"LAN source to web on 80: denied", {std::nullopt, make_address("192.168.7.7"), web, 80}, false, "shop/no-lan"},
      {"LAN source to web on 443: notPorts spares it", {std::nullopt, make_address("192.168.7.7"), web, 443}, true,
       "no policy applies"},
      {"an IPv4-mapped source address matches its IPv4 block",
       {std::nullopt, make_address("::ffff:192.168.1.1"), web, 80}, false, "shop/no-lan"},
  };
  for (const auto& c : cases) {
    const auto decision = authorizer.decide(c.request);
    EXPECT_EQ(decision.allowed, c.allowed) << c.description;
    EXPECT_NE(decision.reason.find(c.reason), std::string::npos) << c.description << ": " << decision.reason;
  }
}

TEST(Authorizer, AllowWithoutRulesAllowsNothingAndRootNamespaceIsMeshWide) {
  const auto config = config_with(R"([{"name": "lockdown", "namespace": "istio-system", "action": "ALLOW"}])");
  const Mesh mesh(config, "cluster.local", "n1");
  const Authorizer authorizer(config.policies);
  EXPECT_FALSE(authorizer.decide({SpiffeId{"cluster.local", "shop", "web"}, make_address("10.0.1.2"),
                                  mesh.by_ip(make_address("10.0.1.4")), 80})
                   .allowed);
}

// Every field of an AuthorizationPolicy and its negation, the combinations (OR across sources,
// operations and rules; AND inside a source and between from and to), precedence and scopes,
// one row per case. The destinations are default/server, default/other and shop/db; unless a
// row says otherwise the policy is default/deny-x (DENY, no selector) or default/allow-x (ALLOW),
// so a matching rule shows in the reason and a rule that does not match leaves "no policy
// applies" (DENY) or "no ALLOW policy matched" (ALLOW). (An empty source or operation, which
// istiod rejects, is rejected by the parser: PolicyConfig.MistakesAreNamedWithTheirPath.)
namespace table {

// A connection's source: its principal ("" = plaintext) and the address the destination's node
// sees it come from.
struct Peer {
  const char* principal;
  const char* ip;
};
constexpr Peer kApp1{"cluster.local/ns/default/sa/app1", "10.0.0.1"};
constexpr Peer kApp2{"cluster.local/ns/default/sa/app2", "10.0.0.2"};
constexpr Peer kWeb{"cluster.local/ns/shop/sa/web", "10.1.0.1"};
constexpr Peer kTester{"cluster.local/ns/shop-test/sa/tester", "10.1.0.9"};
constexpr Peer kPlain{"", "10.0.0.7"};  // plaintext from an address no block below names

constexpr const char* kDenied = "denied by DENY policy default/deny-x";
constexpr const char* kAllowedX = "allowed by ALLOW policy default/allow-x";
constexpr const char* kNoPolicy = "no policy applies";
constexpr const char* kNoAllow = "no ALLOW policy matched";

// The policies of one row: JSON text of the config's "policies" list. The helpers write the
// common shapes; rows about scopes and precedence spell their policies out.
std::string deny_rules(const std::string& rules) {
  return R"([{"name": "deny-x", "namespace": "default", "action": "DENY", "rules": )" + rules + "}]";
}
std::string allow_rules(const std::string& rules) {
  return R"([{"name": "allow-x", "namespace": "default", "action": "ALLOW", "rules": )" + rules + "}]";
}
std::string deny_from(const std::string& source) {
  return deny_rules(R"([{"from": [{"source": )" + source + "}]}]");
}
std::string allow_from(const std::string& source) {
  return allow_rules(R"([{"from": [{"source": )" + source + "}]}]");
}
std::string deny_to(const std::string& operation) {
  return deny_rules(R"([{"to": [{"operation": )" + operation + "}]}]");
}

struct Row {
  const char* checks;
  std::string policies;
  Peer from;
  const char* to;  // "namespace/name" of the destination workload
  uint16_t port;
  bool allowed;
  const char* reason;  // what decision.reason must contain
};

std::shared_ptr<const Workload> workload(const std::string& ns, const std::string& name) {
  auto config = std::make_shared<WorkloadConfig>();
  config->uid = ns + "/" + name;
  config->name = name;
  config->namespace_ = ns;
  config->service_account = name;
  config->node = "n1";
  return std::make_shared<const Workload>(config, SpiffeId{"cluster.local", ns, name}, true);
}

std::optional<SpiffeId> identity(const char* principal) {
  if (*principal == '\0') return std::nullopt;
  auto id = SpiffeId::parse(std::string("spiffe://") + principal);
  if (!id) throw std::invalid_argument(std::string("bad principal in the table: ") + principal);
  return id;
}

}  // namespace table

TEST(Authorizer, IstioL4SemanticsTable) {
  using namespace table;
  const std::map<std::string, std::shared_ptr<const Workload>> destinations = {{"default/server", workload("default", "server")},
                                                        {"default/other", workload("default", "other")},
                                                        {"shop/db", workload("shop", "db")}};
  const Row rows[] = {
      // --- principals ---------------------------------------------------------------------------
      {"principals exact: the named identity matches",
       deny_from(R"({"principals": ["cluster.local/ns/default/sa/app1"]})"), kApp1, "default/server", 8080, false,
       kDenied},
      {"principals exact: another service account does not match",
       deny_from(R"({"principals": ["cluster.local/ns/default/sa/app1"]})"), kApp2, "default/server", 8080, true,
       kNoPolicy},
      {"principals exact: the same service account in another namespace does not match",
       deny_from(R"({"principals": ["cluster.local/ns/shop/sa/app1"]})"), kApp1, "default/server", 8080, true,
       kNoPolicy},
      {"principals exact: the trust domain is part of the principal",
       deny_from(R"({"principals": ["example.org/ns/default/sa/app1"]})"), kApp1, "default/server", 8080, true,
       kNoPolicy},
      {"principals: one of several values is enough",
       deny_from(R"({"principals": ["cluster.local/ns/default/sa/app1", "cluster.local/ns/shop/sa/web"]})"), kWeb,
       "default/server", 8080, false, kDenied},
      {"principals prefix*: a principal with the prefix matches",
       deny_from(R"({"principals": ["cluster.local/ns/default/*"]})"), kApp2, "default/server", 8080, false, kDenied},
      {"principals prefix*: a principal without the prefix does not match",
       deny_from(R"({"principals": ["cluster.local/ns/default/*"]})"), kWeb, "default/server", 8080, true, kNoPolicy},
      {"principals *suffix: a principal with the suffix matches", deny_from(R"({"principals": ["*/sa/web"]})"), kWeb,
       "default/server", 8080, false, kDenied},
      {"principals *suffix: a principal without the suffix does not match",
       deny_from(R"({"principals": ["*/sa/web"]})"), kApp1, "default/server", 8080, true, kNoPolicy},
      // A '*' in the middle would be a literal that matches nothing (a DENY that denies
      // nothing): refused when parsed (PolicyConfig.ValuesThatCanNeverMatchAreRefusedWithTheirPath).
      {"principals *: any mTLS identity matches", deny_from(R"({"principals": ["*"]})"), kTester, "default/server",
       8080, false, kDenied},
      {"principals *: plaintext has no principal and does not match", deny_from(R"({"principals": ["*"]})"), kPlain,
       "default/server", 8080, true, kNoPolicy},
      {"principals exact: plaintext does not match",
       deny_from(R"({"principals": ["cluster.local/ns/default/sa/app1"]})"), {"", "10.0.0.1"}, "default/server", 8080,
       true, kNoPolicy},
      {"ALLOW principals *: plaintext is refused (require mTLS)", allow_from(R"({"principals": ["*"]})"), kPlain,
       "default/server", 8080, false, kNoAllow},
      {"ALLOW principals *: an mTLS source is allowed", allow_from(R"({"principals": ["*"]})"), kApp2,
       "default/server", 8080, true, kAllowedX},
      // --- notPrincipals ------------------------------------------------------------------------
      {"notPrincipals: the excluded identity does not match",
       deny_from(R"({"notPrincipals": ["cluster.local/ns/default/sa/app1"]})"), kApp1, "default/server", 8080, true,
       kNoPolicy},
      {"notPrincipals: any other identity matches",
       deny_from(R"({"notPrincipals": ["cluster.local/ns/default/sa/app1"]})"), kApp2, "default/server", 8080, false,
       kDenied},
      {"notPrincipals: plaintext matches (no principal is not the excluded one)",
       deny_from(R"({"notPrincipals": ["cluster.local/ns/default/sa/app1"]})"), kPlain, "default/server", 8080, false,
       kDenied},
      {"notPrincipals *: plaintext matches (Istio's DENY recipe to require mTLS)",
       deny_from(R"({"notPrincipals": ["*"]})"), kPlain, "default/server", 8080, false, kDenied},
      {"notPrincipals *: an mTLS source does not match", deny_from(R"({"notPrincipals": ["*"]})"), kApp1,
       "default/server", 8080, true, kNoPolicy},
      {"notPrincipals prefix*: a principal with the prefix is excluded",
       deny_from(R"({"notPrincipals": ["cluster.local/ns/default/*"]})"), kApp1, "default/server", 8080, true,
       kNoPolicy},
      {"notPrincipals prefix*: a principal without the prefix matches",
       deny_from(R"({"notPrincipals": ["cluster.local/ns/default/*"]})"), kWeb, "default/server", 8080, false, kDenied},
      {"notPrincipals *suffix: a principal with the suffix is excluded",
       deny_from(R"({"notPrincipals": ["*/sa/web"]})"), kWeb, "default/server", 8080, true, kNoPolicy},
      {"ALLOW notPrincipals: plaintext is allowed (it is not the excluded identity)",
       allow_from(R"({"notPrincipals": ["cluster.local/ns/shop/sa/web"]})"), kPlain, "default/server", 8080, true,
       kAllowedX},
      // --- namespaces ---------------------------------------------------------------------------
      {"namespaces exact: a source of that namespace matches", deny_from(R"({"namespaces": ["default"]})"), kApp1,
       "default/server", 8080, false, kDenied},
      {"namespaces exact: a source of another namespace does not match", deny_from(R"({"namespaces": ["default"]})"),
       kWeb, "default/server", 8080, true, kNoPolicy},
      {"namespaces exact: not a prefix match (shop is not shop-test)", deny_from(R"({"namespaces": ["shop"]})"),
       kTester, "default/server", 8080, true, kNoPolicy},
      {"namespaces prefix*: shop-* matches shop-test", deny_from(R"({"namespaces": ["shop-*"]})"), kTester,
       "default/server", 8080, false, kDenied},
      {"namespaces prefix*: shop-* does not match shop", deny_from(R"({"namespaces": ["shop-*"]})"), kWeb,
       "default/server", 8080, true, kNoPolicy},
      {"namespaces *suffix: *-test matches shop-test", deny_from(R"({"namespaces": ["*-test"]})"), kTester,
       "default/server", 8080, false, kDenied},
      {"namespaces *suffix: *-test does not match default", deny_from(R"({"namespaces": ["*-test"]})"), kApp1,
       "default/server", 8080, true, kNoPolicy},
      {"namespaces *: any mTLS source matches", deny_from(R"({"namespaces": ["*"]})"), kWeb, "default/server", 8080,
       false, kDenied},
      {"namespaces *: plaintext has no namespace and does not match", deny_from(R"({"namespaces": ["*"]})"), kPlain,
       "default/server", 8080, true, kNoPolicy},
      {"namespaces exact: plaintext does not match", deny_from(R"({"namespaces": ["default"]})"), kPlain,
       "default/server", 8080, true, kNoPolicy},
      {"ALLOW namespaces: plaintext is refused", allow_from(R"({"namespaces": ["default"]})"), kPlain,
       "default/server", 8080, false, kNoAllow},
      // --- notNamespaces ------------------------------------------------------------------------
      {"notNamespaces: a source of the excluded namespace does not match",
       deny_from(R"({"notNamespaces": ["default"]})"), kApp1, "default/server", 8080, true, kNoPolicy},
      {"notNamespaces: a source of another namespace matches", deny_from(R"({"notNamespaces": ["default"]})"), kWeb,
       "default/server", 8080, false, kDenied},
      {"notNamespaces: plaintext matches (no namespace is not the excluded one)",
       deny_from(R"({"notNamespaces": ["default"]})"), kPlain, "default/server", 8080, false, kDenied},
      {"notNamespaces *: plaintext matches (it has no namespace at all)", deny_from(R"({"notNamespaces": ["*"]})"),
       kPlain, "default/server", 8080, false, kDenied},
      {"notNamespaces *: an mTLS source does not match", deny_from(R"({"notNamespaces": ["*"]})"), kWeb,
       "default/server", 8080, true, kNoPolicy},
      {"notNamespaces prefix*: shop* excludes shop-test", deny_from(R"({"notNamespaces": ["shop*"]})"), kTester,
       "default/server", 8080, true, kNoPolicy},
      {"notNamespaces prefix*: shop* does not exclude default", deny_from(R"({"notNamespaces": ["shop*"]})"), kApp1,
       "default/server", 8080, false, kDenied},
      {"ALLOW notNamespaces: plaintext is allowed", allow_from(R"({"notNamespaces": ["shop"]})"), kPlain,
       "default/server", 8080, true, kAllowedX},
      // --- ipBlocks -----------------------------------------------------------------------------
      {"ipBlocks single address: that address matches", deny_from(R"({"ipBlocks": ["10.0.0.7"]})"), kPlain,
       "default/server", 8080, false, kDenied},
      {"ipBlocks single address: is a /32, not a text prefix (10.0.0.70)",
       deny_from(R"({"ipBlocks": ["10.0.0.7"]})"), {"", "10.0.0.70"}, "default/server", 8080, true, kNoPolicy},
      {"ipBlocks CIDR v4: an address inside matches", deny_from(R"({"ipBlocks": ["192.168.0.0/16"]})"),
       {"", "192.168.255.1"}, "default/server", 8080, false, kDenied},
      {"ipBlocks CIDR v4: an address outside does not match", deny_from(R"({"ipBlocks": ["192.168.0.0/16"]})"),
       {"", "192.169.0.1"}, "default/server", 8080, true, kNoPolicy},
      {"ipBlocks CIDR v4 with host bits set: only the prefix counts", deny_from(R"({"ipBlocks": ["10.1.2.3/16"]})"),
       {"", "10.1.200.200"}, "default/server", 8080, false, kDenied},
      {"ipBlocks CIDR v4 /0: every IPv4 source matches", deny_from(R"({"ipBlocks": ["0.0.0.0/0"]})"),
       {"", "203.0.113.9"}, "default/server", 8080, false, kDenied},
      {"ipBlocks CIDR v4: an IPv6 source never matches", deny_from(R"({"ipBlocks": ["0.0.0.0/0"]})"),
       {"", "fd00::1"}, "default/server", 8080, true, kNoPolicy},
      {"ipBlocks CIDR v6: an address inside matches", deny_from(R"({"ipBlocks": ["fd00:244::/32"]})"),
       {"", "fd00:244:1::2"}, "default/server", 8080, false, kDenied},
      {"ipBlocks CIDR v6: an address outside does not match", deny_from(R"({"ipBlocks": ["fd00:244::/32"]})"),
       {"", "fd00:245::2"}, "default/server", 8080, true, kNoPolicy},
      {"ipBlocks single v6 address: that address matches", deny_from(R"({"ipBlocks": ["fd00:244:1::2"]})"),
       {"", "fd00:244:1::2"}, "default/server", 8080, false, kDenied},
      {"ipBlocks: an IPv4-mapped IPv6 source matches its IPv4 block", deny_from(R"({"ipBlocks": ["192.168.0.0/16"]})"),
       {"", "::ffff:192.168.1.1"}, "default/server", 8080, false, kDenied},
      {"ipBlocks: an IPv4-mapped IPv6 source outside the IPv4 block does not match",
       deny_from(R"({"ipBlocks": ["192.168.0.0/16"]})"), {"", "::ffff:10.0.0.7"}, "default/server", 8080, true,
       kNoPolicy},
      {"ipBlocks: an IPv4-mapped block is an IPv4 block", deny_from(R"({"ipBlocks": ["::ffff:10.9.0.0/112"]})"),
       {"", "10.9.3.4"}, "default/server", 8080, false, kDenied},
      {"ipBlocks: one of several blocks is enough", deny_from(R"({"ipBlocks": ["10.9.0.0/16", "10.0.0.0/24"]})"),
       kPlain, "default/server", 8080, false, kDenied},
      {"ipBlocks: apply to mTLS sources too", deny_from(R"({"ipBlocks": ["10.0.0.0/24"]})"), kApp1, "default/server",
       8080, false, kDenied},
      // --- notIpBlocks --------------------------------------------------------------------------
      {"notIpBlocks: an address inside the block does not match", deny_from(R"({"notIpBlocks": ["10.0.0.0/8"]})"),
       kPlain, "default/server", 8080, true, kNoPolicy},
      {"notIpBlocks: an address outside the block matches", deny_from(R"({"notIpBlocks": ["10.0.0.0/8"]})"),
       {"", "192.168.1.1"}, "default/server", 8080, false, kDenied},
      {"notIpBlocks: an IPv4-mapped source inside the IPv4 block does not match",
       deny_from(R"({"notIpBlocks": ["192.168.0.0/16"]})"), {"", "::ffff:192.168.1.1"}, "default/server", 8080, true,
       kNoPolicy},
      {"notIpBlocks v6: an IPv6 address outside the block matches", deny_from(R"({"notIpBlocks": ["fd00::/8"]})"),
       {"", "2001:db8::1"}, "default/server", 8080, false, kDenied},
      // --- ports and notPorts -------------------------------------------------------------------
      {"ports: the listed port matches", deny_to(R"({"ports": ["8080"]})"), kApp1, "default/server", 8080, false,
       kDenied},
      {"ports: another port does not match", deny_to(R"({"ports": ["8080"]})"), kApp1, "default/server", 9090, true,
       kNoPolicy},
      {"ports: numbers work as Istio's strings do", deny_to(R"({"ports": [9090]})"), kApp1, "default/server", 9090,
       false, kDenied},
      {"ports: one of several is enough", deny_to(R"({"ports": ["80", "443"]})"), kApp1, "default/server", 443, false,
       kDenied},
      {"notPorts: the excluded port does not match", deny_to(R"({"notPorts": ["8080"]})"), kApp1, "default/server",
       8080, true, kNoPolicy},
      {"notPorts: any other port matches", deny_to(R"({"notPorts": ["8080"]})"), kApp1, "default/server", 9090, false,
       kDenied},
      {"ports and notPorts in one operation: both must hold",
       deny_to(R"({"ports": ["80", "443"], "notPorts": ["443"]})"), kApp1, "default/server", 443, true, kNoPolicy},
      // --- several fields in one source: AND ----------------------------------------------------
      {"source AND: namespaces and notPrincipals, a principal of the namespace not excluded",
       deny_from(R"({"namespaces": ["default"], "notPrincipals": ["cluster.local/ns/default/sa/app1"]})"), kApp2,
       "default/server", 8080, false, kDenied},
      {"source AND: namespaces and notPrincipals, the excluded principal",
       deny_from(R"({"namespaces": ["default"], "notPrincipals": ["cluster.local/ns/default/sa/app1"]})"), kApp1,
       "default/server", 8080, true, kNoPolicy},
      {"source AND: principals and ipBlocks, both match",
       deny_from(R"({"principals": ["cluster.local/ns/default/sa/app1"], "ipBlocks": ["10.0.0.0/24"]})"), kApp1,
       "default/server", 8080, false, kDenied},
      {"source AND: principals and ipBlocks, the principal from another address",
       deny_from(R"({"principals": ["cluster.local/ns/default/sa/app1"], "ipBlocks": ["10.0.0.0/24"]})"),
       {"cluster.local/ns/default/sa/app1", "10.9.9.9"}, "default/server", 8080, true, kNoPolicy},
      {"source AND: ipBlocks and notPrincipals *, plaintext from the block",
       deny_from(R"({"ipBlocks": ["10.0.0.0/24"], "notPrincipals": ["*"]})"), kPlain, "default/server", 8080, false,
       kDenied},
      {"source AND: ipBlocks and notPrincipals *, mTLS from the block",
       deny_from(R"({"ipBlocks": ["10.0.0.0/24"], "notPrincipals": ["*"]})"), kApp1, "default/server", 8080, true,
       kNoPolicy},
      // --- several sources in one rule, several operations: OR ----------------------------------
      {"sources OR: the first source matches",
       deny_rules(R"([{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}},
                                {"source": {"ipBlocks": ["192.168.0.0/16"]}}]}])"),
       kApp1, "default/server", 8080, false, kDenied},
      {"sources OR: the second source matches",
       deny_rules(R"([{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}},
                                {"source": {"ipBlocks": ["192.168.0.0/16"]}}]}])"),
       {"", "192.168.1.1"}, "default/server", 8080, false, kDenied},
      {"sources OR: neither source matches",
       deny_rules(R"([{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}},
                                {"source": {"ipBlocks": ["192.168.0.0/16"]}}]}])"),
       kApp2, "default/server", 8080, true, kNoPolicy},
      {"operations OR: the second operation matches",
       deny_rules(R"([{"to": [{"operation": {"ports": ["80"]}}, {"operation": {"ports": ["443"]}}]}])"), kApp1,
       "default/server", 443, false, kDenied},
      {"operations OR: neither operation matches",
       deny_rules(R"([{"to": [{"operation": {"ports": ["80"]}}, {"operation": {"ports": ["443"]}}]}])"), kApp1,
       "default/server", 8080, true, kNoPolicy},
      // --- from and to together: AND ------------------------------------------------------------
      {"from AND to: source and port match",
       deny_rules(R"([{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}],
                       "to": [{"operation": {"ports": ["8080"]}}]}])"),
       kApp1, "default/server", 8080, false, kDenied},
      {"from AND to: the source on another port",
       deny_rules(R"([{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}],
                       "to": [{"operation": {"ports": ["8080"]}}]}])"),
       kApp1, "default/server", 9090, true, kNoPolicy},
      {"from AND to: another source on the port",
       deny_rules(R"([{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}],
                       "to": [{"operation": {"ports": ["8080"]}}]}])"),
       kApp2, "default/server", 8080, true, kNoPolicy},
      // --- several rules: OR --------------------------------------------------------------------
      {"rules OR: the first rule matches",
       deny_rules(R"([{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}]},
                      {"to": [{"operation": {"ports": ["9090"]}}]}])"),
       kApp1, "default/server", 8080, false, kDenied},
      {"rules OR: the second rule matches",
       deny_rules(R"([{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}]},
                      {"to": [{"operation": {"ports": ["9090"]}}]}])"),
       kApp2, "default/server", 9090, false, kDenied},
      {"rules OR: no rule matches",
       deny_rules(R"([{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}]},
                      {"to": [{"operation": {"ports": ["9090"]}}]}])"),
       kApp2, "default/server", 8080, true, kNoPolicy},
      {"a rule with neither from nor to matches everything (DENY)", deny_rules("[{}]"), kApp1, "default/server", 8080,
       false, kDenied},
      {"a rule with neither from nor to matches everything (ALLOW: allow-all)", allow_rules("[{}]"), kPlain,
       "default/server", 8080, true, kAllowedX},
      // --- precedence ---------------------------------------------------------------------------
      {"no policy at all: allowed", "[]", kPlain, "default/server", 8080, true, kNoPolicy},
      {"only DENY policies, none matching: allowed",
       deny_from(R"({"principals": ["cluster.local/ns/default/sa/app1"]})"), kApp2, "default/server", 8080, true,
       kNoPolicy},
      {"DENY before ALLOW: both match, DENY wins",
       R"([{"name": "allow-x", "namespace": "default", "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}]}]},
           {"name": "deny-x", "namespace": "default", "action": "DENY",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}]}]}])",
       kApp1, "default/server", 8080, false, kDenied},
      {"DENY before ALLOW: the DENY does not match, the ALLOW does",
       R"([{"name": "allow-x", "namespace": "default", "action": "ALLOW",
            "rules": [{"from": [{"source": {"namespaces": ["default"]}}]}]},
           {"name": "deny-x", "namespace": "default", "action": "DENY",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}]}]}])",
       kApp2, "default/server", 8080, true, kAllowedX},
      {"some ALLOW applies: a matching one allows",
       allow_from(R"({"principals": ["cluster.local/ns/default/sa/app1"]})"), kApp1, "default/server", 8080, true,
       kAllowedX},
      {"some ALLOW applies: a source none matches is denied",
       allow_from(R"({"principals": ["cluster.local/ns/default/sa/app1"]})"), kApp2, "default/server", 8080, false,
       kNoAllow},
      {"several ALLOW policies: the second one matching is enough",
       R"([{"name": "allow-a", "namespace": "default", "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}]}]},
           {"name": "allow-b", "namespace": "default", "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/web"]}}]}]}])",
       kWeb, "default/server", 8080, true, "allowed by ALLOW policy default/allow-b"},
      {"action omitted means ALLOW",
       R"([{"name": "allow-x", "namespace": "default",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}]}]}])",
       kApp2, "default/server", 8080, false, kNoAllow},
      {"ALLOW without rules allows nothing (Istio's allow-nothing)",
       R"([{"name": "allow-nothing", "namespace": "default", "action": "ALLOW"}])", kApp1, "default/server", 8080,
       false, kNoAllow},
      {"ALLOW with an empty rules list allows nothing", allow_rules("[]"), kApp1, "default/server", 8080, false,
       kNoAllow},
      {"DENY without rules denies nothing", R"([{"name": "deny-x", "namespace": "default", "action": "DENY"}])",
       kApp1, "default/server", 8080, true, kNoPolicy},
      {"DENY without rules does not count as an ALLOW policy either",
       R"([{"name": "deny-x", "namespace": "default", "action": "DENY"},
           {"name": "allow-x", "namespace": "default", "action": "ALLOW", "rules": [{}]}])",
       kApp1, "default/server", 8080, true, kAllowedX},
      // --- scopes -------------------------------------------------------------------------------
      {"root namespace: a DENY in istio-system applies in every namespace",
       R"([{"name": "deny-x", "namespace": "istio-system", "action": "DENY",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}]}]}])",
       kApp1, "shop/db", 5432, false, "denied by DENY policy istio-system/deny-x"},
      {"root namespace: a DENY in istio-system beats an ALLOW of the workload's namespace",
       R"([{"name": "deny-x", "namespace": "istio-system", "action": "DENY",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}]}]},
           {"name": "allow-x", "namespace": "default", "action": "ALLOW", "rules": [{}]}])",
       kApp1, "default/server", 8080, false, "denied by DENY policy istio-system/deny-x"},
      {"root namespace: an ALLOW there counts as an ALLOW policy for every workload",
       R"([{"name": "allow-x", "namespace": "istio-system", "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}]}]}])",
       kApp2, "shop/db", 5432, false, kNoAllow},
      {"root namespace and workload namespace ALLOWs: either one matching is enough",
       R"([{"name": "allow-x", "namespace": "istio-system", "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}]}]},
           {"name": "allow-y", "namespace": "shop", "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app2"]}}]}]}])",
       kApp2, "shop/db", 5432, true, "allowed by ALLOW policy shop/allow-y"},
      {"root namespace with a selector: applies to that workload name in any namespace",
       R"([{"name": "deny-x", "namespace": "istio-system", "action": "DENY", "selector": {"workloads": ["db"]},
            "rules": [{}]}])",
       kApp1, "shop/db", 5432, false, "denied by DENY policy istio-system/deny-x"},
      {"root namespace with a selector: not to other workloads",
       R"([{"name": "deny-x", "namespace": "istio-system", "action": "DENY", "selector": {"workloads": ["db"]},
            "rules": [{}]}])",
       kApp1, "default/server", 8080, true, kNoPolicy},
      {"namespace scope: a DENY in another namespace does not apply",
       R"([{"name": "deny-x", "namespace": "shop", "action": "DENY", "rules": [{}]}])", kApp1, "default/server", 8080,
       true, kNoPolicy},
      {"namespace scope: a DENY in the workload's namespace applies to all its workloads",
       R"([{"name": "deny-x", "namespace": "default", "action": "DENY", "rules": [{}]}])", kApp1, "default/other",
       8080, false, kDenied},
      {"namespace scope: an allow-nothing in another namespace does not lock this one",
       R"([{"name": "allow-nothing", "namespace": "shop", "action": "ALLOW"}])", kApp1, "default/server", 8080, true,
       kNoPolicy},
      {"selector: applies to the named workload",
       R"([{"name": "deny-x", "namespace": "default", "action": "DENY", "selector": {"workloads": ["server"]},
            "rules": [{}]}])",
       kApp1, "default/server", 8080, false, kDenied},
      {"selector: does not apply to other workloads of the namespace",
       R"([{"name": "deny-x", "namespace": "default", "action": "DENY", "selector": {"workloads": ["server"]},
            "rules": [{}]}])",
       kApp1, "default/other", 8080, true, kNoPolicy},
      {"selector: a workload of that name in another namespace is not selected",
       R"([{"name": "deny-x", "namespace": "default", "action": "DENY", "selector": {"workloads": ["db"]},
            "rules": [{}]}])",
       kApp1, "shop/db", 5432, true, kNoPolicy},
      {"selector: an ALLOW selecting one workload does not lock the others",
       R"([{"name": "allow-x", "namespace": "default", "action": "ALLOW", "selector": {"workloads": ["server"]}}])",
       kApp1, "default/other", 8080, true, kNoPolicy},
      {"selector: an ALLOW selecting the workload locks it",
       R"([{"name": "allow-x", "namespace": "default", "action": "ALLOW", "selector": {"workloads": ["server"]}}])",
       kApp1, "default/server", 8080, false, kNoAllow},
      {"selector: several workloads, the second one named",
       R"([{"name": "deny-x", "namespace": "default", "action": "DENY",
            "selector": {"workloads": ["server", "other"]}, "rules": [{}]}])",
       kApp1, "default/other", 8080, false, kDenied},
      // --- where zmesh accepts what Istio rejects ------------------------------------------------
  };
  for (const auto& row : rows) {
    try {
      const MeshConfig config = parse_config(R"({"policies": )" + row.policies + "}");
      const Authorizer authorizer(config.policies);
      const AccessRequest request{identity(row.from.principal), make_address(row.from.ip), destinations.at(row.to).get(),
                                  row.port};
      const AccessDecision decision = authorizer.decide(request);
      EXPECT_EQ(decision.allowed, row.allowed) << row.checks << ": " << decision.reason;
      EXPECT_NE(decision.reason.find(row.reason), std::string::npos)
          << row.checks << ": reason \"" << decision.reason << "\" lacks \"" << row.reason << "\"";
    } catch (const std::exception& e) {
      ADD_FAILURE() << row.checks << ": " << e.what();
    }
  }
}

TEST(Authorizer, PatternsAsIstioMatchesThem) {
  EXPECT_TRUE(matches_pattern("*", "anything"));
  EXPECT_TRUE(matches_pattern("cluster.local/ns/shop/*", "cluster.local/ns/shop/sa/web"));
  EXPECT_TRUE(matches_pattern("*/sa/web", "cluster.local/ns/shop/sa/web"));
  EXPECT_FALSE(matches_pattern("*/sa/web", "cluster.local/ns/shop/sa/db"));
  EXPECT_FALSE(matches_pattern("shop", "shops"));
}

// A policies text the config must refuse, and what its message must say.
struct Mistake {
  const char* policies;
  const char* message;
};

void check_mistakes(std::initializer_list<Mistake> cases) {
  for (const auto& c : cases) {
    try {
      config_with(c.policies);
      ADD_FAILURE() << "accepted: " << c.policies;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << "got: " << e.what();
    }
  }
}

TEST(PolicyConfig, MistakesAreNamedWithTheirPath) {
  check_mistakes({
      {R"([{"namespace": "a"}])", "policies[0].name: missing"},
      {R"([{"name": "p", "namespace": "a", "action": "REJECT"}])", "policies[0].action: expected \"ALLOW\" or \"DENY\""},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"principals": "x"}}]}]}])",
       "policies[0].rules[0].from[0].source.principals: expected a list of strings"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/33"]}}]}]}])",
       "policies[0].rules[0].from[0].source.ipBlocks[0]: '10.0.0.0/33' has a bad prefix length"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"to": [{"operation": {"ports": ["http"]}}]}]}])",
       "policies[0].rules[0].to[0].operation.ports[0]: expected a port 1..65535"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"when": []}]}])", "policies[0].rules[0].when: unknown field"},
      // As istiod: an empty source or operation would match everything, an empty string nothing sensible.
      {R"([{"name": "p", "namespace": "a", "action": "DENY", "rules": [{"from": [{"source": {}}]}]}])",
       "policies[0].rules[0].from[0].source: must not be empty"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"to": [{"operation": {}}]}]}])",
       "policies[0].rules[0].to[0].operation: must not be empty"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"notPrincipals": [""]}}]}]}])",
       "policies[0].rules[0].from[0].source.notPrincipals[0]: must not be an empty string"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"to": [{"operation": {"ports": [4294967297]}}]}]}])",
       "policies[0].rules[0].to[0].operation.ports[0]: expected a port 1..65535"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"ipBlocks": ["::ffff:0:0/64"]}}]}]}])",
       "mixes IPv4-mapped and other IPv6 addresses"},
  });
}

// An empty list is a field Istio does not see as set: a source or an operation made only of
// empty lists is empty, and refused. Before, {"principals": []} matched every source and an
// ALLOW with it failed open.
TEST(PolicyConfig, EmptyListsAreNotSetAndAnEmptySourceOrOperationIsRefused) {
  check_mistakes({
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"principals": []}}]}]}])",
       "policies[0].rules[0].from[0].source: must not be empty"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"ipBlocks": []}}]}]}])",
       "policies[0].rules[0].from[0].source: must not be empty"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"namespaces": [], "notNamespaces": [],
          "principals": [], "notPrincipals": [], "ipBlocks": [], "notIpBlocks": []}}]}]}])",
       "policies[0].rules[0].from[0].source: must not be empty"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"to": [{"operation": {"ports": []}}]}]}])",
       "policies[0].rules[0].to[0].operation: must not be empty"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"to": [{"operation": {"ports": [], "notPorts": []}}]}]}])",
       "policies[0].rules[0].to[0].operation: must not be empty"},
  });
  // An empty list beside a set field is just not set: the set field decides.
  const auto config = config_with(R"([{"name": "p", "namespace": "shop", "selector": {"workloads": ["db"]},
      "rules": [{"from": [{"source": {"principals": [], "namespaces": ["shop"]}}]}]}])");
  const Mesh mesh(config, "cluster.local", "n1");
  const Authorizer authorizer(config.policies);
  const Workload* db = mesh.by_ip(boost::asio::ip::make_address("10.0.1.3"));
  ASSERT_NE(db, nullptr);
  EXPECT_TRUE(authorizer.decide({SpiffeId{"cluster.local", "shop", "web"}, {}, db, 5432}).allowed);
  EXPECT_FALSE(authorizer.decide({SpiffeId{"cluster.local", "blog", "other"}, {}, db, 5432}).allowed)
      << "the empty principals list did not widen the source";
}

// Strings that could never match a peer, and names Kubernetes would not give.
TEST(PolicyConfig, ValuesThatCanNeverMatchAreRefusedWithTheirPath) {
  check_mistakes({
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"principals": ["spiffe://cluster.local/ns/a/sa/b"]}}]}]}])",
       "source.principals[0]: 'spiffe://cluster.local/ns/a/sa/b' starts with spiffe://"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/"]}}]}]}])",
       "source.principals[0]: 'cluster.local/ns/a/sa/' ends with '/'"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"notPrincipals": [" cluster.local/ns/a/sa/b"]}}]}]}])",
       "source.notPrincipals[0]: ' cluster.local/ns/a/sa/b' contains a space"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"principals": ["cluster.local/*/sa/b"]}}]}]}])",
       "has a '*' inside"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"principals": ["cluster.local//ns/a"]}}]}]}])",
       "contains '//'"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"namespaces": ["Shop"]}}]}]}])",
       "source.namespaces[0]: 'Shop' is not a namespace name"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"notNamespaces": ["a/b"]}}]}]}])",
       "source.notNamespaces[0]: 'a/b' is not a namespace name"},
      {R"([{"name": "p/q", "namespace": "a"}])", "policies[0].name: 'p/q' is not a Kubernetes name"},
      {R"([{"name": "p", "namespace": "A"}])", "policies[0].namespace: 'A' is not a Kubernetes name"},
      {R"([{"name": "p", "namespace": "a", "selector": {"workloads": ["x/y"]}}])",
       "policies[0].selector.workloads[0]: 'x/y' is not a workload name"},
  });
  // Istio's wildcards stay valid.
  EXPECT_NO_THROW(config_with(R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {
      "principals": ["*", "cluster.local/ns/a/*", "*/sa/b"], "namespaces": ["*", "team-*", "*-prod"]}}]}]}])"));
}

// What only istiod's policies say (issue 16): clauses that mix sources and destinations,
// service accounts, destination addresses, scopes, dry runs — with ztunnel's semantics: a
// match that sets nothing matches nothing, a clause without matches always matches.
TEST(Authorizer, ClausesServiceAccountsDestinationsScopesAndDryRuns) {
  const auto config = parse_config(R"({"workloads": [
      {"name": "web", "namespace": "shop", "serviceAccount": "web", "node": "n1", "workloadIps": ["10.0.1.2"]},
      {"name": "db", "namespace": "shop", "serviceAccount": "db", "node": "n1", "workloadIps": ["10.0.1.3", "fd00::3"],
       "authorizationPolicies": ["shop/db-only"]},
      {"name": "other", "namespace": "blog", "serviceAccount": "other", "node": "n1", "workloadIps": ["10.0.1.4"]}],
    "policies": [
      {"name": "db-only", "namespace": "shop", "action": "ALLOW", "scope": "WORKLOAD_SELECTOR",
       "rules": [{"clauses": [{"matches": [{"serviceAccounts": ["shop/web"], "destinationPorts": [5432]},
                                           {"sourceIps": ["10.9.0.0/16"], "notDestinationIps": ["fd00::/64"]}]}]}]},
      {"name": "watch-only", "namespace": "blog", "action": "DENY", "dryRun": true, "rules": [{}]},
      {"name": "everywhere", "namespace": "blog", "action": "DENY", "scope": "GLOBAL",
       "rules": [{"from": [{"source": {"notServiceAccounts": ["shop/web", "shop/db"], "namespaces": ["shop"]}}]}]}]})");
  const Mesh mesh(config, "cluster.local", "n1");
  const Authorizer authorizer(config.policies);
  const auto* web = mesh.by_ip(make_address("10.0.1.2"));
  const auto* db = mesh.by_ip(make_address("10.0.1.3"));
  const auto* other = mesh.by_ip(make_address("10.0.1.4"));
  const SpiffeId web_id{"cluster.local", "shop", "web"}, db_id{"cluster.local", "shop", "db"},
      cron_id{"cluster.local", "shop", "cron"};
  struct Case {
    const char* description;
    AccessRequest request;
    bool allowed;
    const char* reason;
  } cases[] = {
      {"shop/web's account to db on 5432: the first match", {web_id, make_address("10.0.1.2"), db, 5432}, true,
       "shop/db-only"},
      {"shop/web to db on 22: that match's port fails", {web_id, make_address("10.0.1.2"), db, 22}, false,
       "no ALLOW policy matched"},
      {"plaintext from 10.9.x to db's IPv4: the second match", {std::nullopt, make_address("10.9.1.1"), db, 22}, true,
       "shop/db-only"},
      {"plaintext from 10.9.x to db's IPv6 address: excluded by notDestinationIps",
       {std::nullopt, make_address("10.9.1.1"), db, 22, make_address("fd00::3")}, false, "no ALLOW policy matched"},
      {"the policy is listed by db only: web has no ALLOW", {std::nullopt, make_address("10.8.0.1"), web, 80}, true,
       "no policy applies"},
      {"GLOBAL in a namespace of its own: applies to blog/other too", {cron_id, make_address("10.0.1.5"), other, 80},
       false, "blog/everywhere"},
      {"notServiceAccounts spares shop/db", {db_id, make_address("10.0.1.3"), other, 80}, true, "no policy applies"},
      {"a plaintext source has no namespace: 'namespaces' does not match it",
       {std::nullopt, make_address("10.0.1.5"), other, 80}, true, "no policy applies"},
  };
  for (const auto& c : cases) {
    const auto decision = authorizer.decide(c.request);
    EXPECT_EQ(decision.allowed, c.allowed) << c.description << ": " << decision.reason;
    EXPECT_NE(decision.reason.find(c.reason), std::string::npos) << c.description << ": " << decision.reason;
  }
  // The dry-run DENY (it matches everything) decided nothing above, and gives the kernel nothing.
  EXPECT_TRUE(authorizer.kernel_denies(mesh).empty());
}

TEST(Authorizer, AMatchThatSetsNothingMatchesNothingAndAClauseWithoutMatchesAlways) {
  auto config = std::make_shared<WorkloadConfig>();
  config->name = "server";
  config->namespace_ = "default";
  const Workload server{config, SpiffeId{"cluster.local", "default", "server"}, true};
  AuthorizationPolicy deny;
  deny.name = "d";
  deny.namespace_ = "default";
  deny.action = AuthorizationPolicy::Action::Deny;
  deny.rules = {PolicyRule{{PolicyClause{{PolicyMatch{}}}}}};  // one clause of one empty match: never
  const AccessRequest request{SpiffeId{"cluster.local", "default", "client"}, make_address("10.0.0.1"), &server, 80};
  EXPECT_TRUE(Authorizer({deny}).decide(request).allowed);
  deny.rules = {PolicyRule{{PolicyClause{}}}};  // one clause without matches: always
  EXPECT_FALSE(Authorizer({deny}).decide(request).allowed);
  deny.rules = {PolicyRule{}};  // no clauses: always
  EXPECT_FALSE(Authorizer({deny}).decide(request).allowed);
  deny.rules = {};  // no rules: a DENY that denies nothing
  EXPECT_TRUE(Authorizer({deny}).decide(request).allowed);
}

// The file's JSON says every policy the model can hold, and reads back the same: listings and
// the runtime layer's file lose nothing.
TEST(PolicyConfig, EveryPolicyReadsBackAsItWasWritten) {
  const char* texts[] = {
      R"({"name": "a", "namespace": "shop", "action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}],
          "to": [{"operation": {"ports": [80, 443]}}]}]})",
      R"({"name": "b", "namespace": "istio-system", "rules": []})",
      R"({"name": "c", "namespace": "shop", "selector": {"workloads": ["db"]},
          "rules": [{"from": [{"source": {"serviceAccounts": ["shop/web"], "notPrincipals": ["*/sa/cron"]}}]}, {}]})",
      R"({"name": "d", "namespace": "shop", "scope": "WORKLOAD_SELECTOR", "dryRun": true,
          "rules": [{"clauses": [{"matches": [{"destinationIps": ["10.0.1.0/24"], "namespaces": ["shop"]}]},
                                 {"matches": []}]}]})",
      R"({"name": "e", "namespace": "shop", "scope": "GLOBAL", "rules": [{"to": [{"operation": {"notPorts": [22]}}]}]})",
      R"({"name": "f", "namespace": "shop", "rules": [{"clauses": [{"matches": [{"destinationPorts": [1]}]},
          {"matches": [{"namespaces": ["x"]}]}]}]})",
  };
  for (const char* text : texts) {
    SCOPED_TRACE(text);
    const AuthorizationPolicy p = parse_policy(nlohmann::json::parse(text), "p");
    const AuthorizationPolicy again = parse_policy(to_json(p), "p");
    EXPECT_EQ(again, p) << to_json(p).dump();
  }
  // Istio's from/to is written as such; a rule it cannot say is written as clauses.
  EXPECT_TRUE(to_json(parse_policy(nlohmann::json::parse(texts[0]), "p"))["rules"][0].contains("from"));
  EXPECT_TRUE(to_json(parse_policy(nlohmann::json::parse(texts[5]), "p"))["rules"][0].contains("clauses"))
      << "ports before sources is not from/to";
}

TEST(PolicyConfig, ClausesScopesAndServiceAccountsAreCheckedToo) {
  check_mistakes({
      {R"([{"name": "p", "namespace": "a", "scope": "CLUSTER"}])", "policies[0].scope: expected GLOBAL, NAMESPACE"},
      {R"([{"name": "p", "namespace": "a", "scope": "NAMESPACE", "selector": {"workloads": ["w"]}}])",
       "policies[0].scope: a policy with a selector has scope WORKLOAD_SELECTOR"},
      {R"([{"name": "p", "namespace": "a", "dryRun": "yes"}])", "policies[0].dryRun: expected true or false"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"clauses": [{"matches": [{}]}]}]}])",
       "policies[0].rules[0].clauses[0].matches[0]: must not be empty"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"clauses": [], "from": []}]}])",
       "policies[0].rules[0].from: unknown field"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"clauses": [{"matches": [{"ipBlocks": ["10.0.0.0/8"]}]}]}]}])",
       "matches[0].ipBlocks: unknown field"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"serviceAccounts": ["web"]}}]}]}])",
       "source.serviceAccounts[0]: 'web' is not \"<namespace>/<service account>\""},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"destinationIps": ["10.0.0.1"]}}]}]}])",
       "source.destinationIps: unknown field"},
  });
}

}  // namespace
}  // namespace zmesh
