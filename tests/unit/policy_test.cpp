// L4 authorization with Istio AuthorizationPolicy semantics, table-driven, and the config errors
// of policies named with their JSON path.
#include <gtest/gtest.h>

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

TEST(Authorizer, PatternsAsIstioMatchesThem) {
  EXPECT_TRUE(matches_pattern("*", "anything"));
  EXPECT_TRUE(matches_pattern("cluster.local/ns/shop/*", "cluster.local/ns/shop/sa/web"));
  EXPECT_TRUE(matches_pattern("*/sa/web", "cluster.local/ns/shop/sa/web"));
  EXPECT_FALSE(matches_pattern("*/sa/web", "cluster.local/ns/shop/sa/db"));
  EXPECT_FALSE(matches_pattern("shop", "shops"));
}

TEST(PolicyConfig, MistakesAreNamedWithTheirPath) {
  struct Case {
    const char* policies;
    const char* message;
  } cases[] = {
      {R"([{"namespace": "a"}])", "policies[0].name: missing"},
      {R"([{"name": "p", "namespace": "a", "action": "REJECT"}])", "policies[0].action: expected \"ALLOW\" or \"DENY\""},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"principals": "x"}}]}]}])",
       "policies[0].rules[0].from[0].source.principals: expected a list of strings"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/33"]}}]}]}])",
       "policies[0].rules[0].from[0].source.ipBlocks[0]: '10.0.0.0/33' has a bad prefix length"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"to": [{"operation": {"ports": ["http"]}}]}]}])",
       "policies[0].rules[0].to[0].operation.ports[0]: expected a port 1..65535"},
      {R"([{"name": "p", "namespace": "a", "rules": [{"when": []}]}])", "policies[0].rules[0].when: unknown field"},
  };
  for (const auto& c : cases) {
    try {
      config_with(c.policies);
      ADD_FAILURE() << "accepted: " << c.policies;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << "got: " << e.what();
    }
  }
}

}  // namespace
}  // namespace zmesh
