// Which DENY rules the kernel's deny map gets: only those it can decide without an identity,
// expanded over the local workloads they select. What the kernel drops, the authorizer must
// deny too; everything else stays with the proxy.
#include <gtest/gtest.h>

#include "zmesh/config.h"
#include "zmesh/mesh.h"
#include "zmesh/policy.h"

namespace zmesh {
namespace {

const char* kWorkloads = R"(
  {"name": "web", "namespace": "shop", "node": "node1", "workloadIps": ["10.244.1.2", "fd00:244:1::2"]},
  {"name": "db", "namespace": "shop", "node": "node1", "workloadIps": ["10.244.1.3"]},
  {"name": "far", "namespace": "shop", "node": "node2", "workloadIps": ["10.244.2.2"]},
  {"name": "other", "namespace": "ops", "node": "node1", "workloadIps": ["10.244.1.4"]})";

std::vector<KernelDeny> denies_for(const std::string& policies) {
  const MeshConfig config =
      parse_config(std::string(R"({"workloads": [)") + kWorkloads + R"(], "policies": )" + policies + "}");
  const Mesh mesh(config, "cluster.local", "node1");
  return Authorizer(config.policies).kernel_denies(mesh);
}

std::vector<std::string> texts(const std::vector<KernelDeny>& denies) {
  std::vector<std::string> out;
  for (const auto& d : denies)
    out.push_back(d.source.address.to_string() + "/" + std::to_string(d.source.prefix) + " -> " +
                  d.destination.to_string() + ":" + std::to_string(d.port));
  return out;
}

TEST(KernelDeny, AddressAndPortRulesExpandOverTheSelectedLocalWorkloads) {
  const auto denies = denies_for(R"([{"name": "d", "namespace": "shop", "action": "DENY",
      "selector": {"workloads": ["web", "far"]},
      "rules": [{"from": [{"source": {"ipBlocks": ["10.9.0.0/16", "fd00:9::/32"]}}],
                 "to": [{"operation": {"ports": ["80", "443"]}}]}]}])");
  EXPECT_EQ(texts(denies), (std::vector<std::string>{
                               "10.9.0.0/16 -> 10.244.1.2:80", "10.9.0.0/16 -> 10.244.1.2:443",
                               "fd00:9::/32 -> fd00:244:1::2:80", "fd00:9::/32 -> fd00:244:1::2:443"}))
      << "families matched; 'far' is on another node";
  EXPECT_EQ(denies.front().policy, 1u);  // the first policy's id
}

TEST(KernelDeny, NoFromMeansEverySourceAndNoToMeansEveryPort) {
  EXPECT_EQ(texts(denies_for(R"([{"name": "d", "namespace": "shop", "action": "DENY", "selector": {"workloads": ["db"]},
      "rules": [{"to": [{"operation": {"ports": ["5432"]}}]}]}])")),
            (std::vector<std::string>{"0.0.0.0/0 -> 10.244.1.3:5432"}));
  EXPECT_EQ(texts(denies_for(R"([{"name": "d", "namespace": "shop", "action": "DENY", "selector": {"workloads": ["db"]},
      "rules": [{"from": [{"source": {"ipBlocks": ["10.9.9.9"]}}]}]}])")),
            (std::vector<std::string>{"10.9.9.9/32 -> 10.244.1.3:0"}));
}

TEST(KernelDeny, ScopesFollowTheAuthorizer) {
  const char* rule = R"("rules": [{"from": [{"source": {"ipBlocks": ["10.9.0.0/16"]}}]}])";
  // Namespace scope: shop's local workloads (web v4, db), not ops/other.
  EXPECT_EQ(denies_for(std::string(R"([{"name": "d", "namespace": "shop", "action": "DENY", )") + rule + "}]").size(),
            2u);
  // Root namespace: every local workload.
  EXPECT_EQ(
      denies_for(std::string(R"([{"name": "d", "namespace": "istio-system", "action": "DENY", )") + rule + "}]").size(),
      3u);
}

TEST(KernelDeny, RulesThatNeedAnIdentityOrANegationOrAllowStayInTheProxy) {
  for (const char* policies : {
           R"([{"name": "a", "namespace": "shop", "action": "ALLOW", "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}]}]}])",
           R"([{"name": "d", "namespace": "shop", "action": "DENY", "rules": [{"from": [{"source": {"principals": ["*"]}}]}]}])",
           R"([{"name": "d", "namespace": "shop", "action": "DENY", "rules": [{"from": [{"source": {"namespaces": ["x"]}}]}]}])",
           R"([{"name": "d", "namespace": "shop", "action": "DENY",
                "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/8"], "notIpBlocks": ["10.1.0.0/16"]}}]}]}])",
           R"([{"name": "d", "namespace": "shop", "action": "DENY",
                "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}, {"source": {"principals": ["a"]}}]}]}])",
           R"([{"name": "d", "namespace": "shop", "action": "DENY", "rules": [{"to": [{"operation": {"notPorts": ["80"]}}]}]}])",
           R"([{"name": "d", "namespace": "shop", "action": "DENY", "rules": []}])"}) {
    EXPECT_TRUE(denies_for(policies).empty()) << policies;
  }
}

// Every entry the kernel gets is a request the authorizer denies (plaintext, no identity).
TEST(KernelDeny, WhatTheKernelDropsTheAuthorizerDenies) {
  const std::string policies = R"([{"name": "d", "namespace": "shop", "action": "DENY",
      "rules": [{"from": [{"source": {"ipBlocks": ["10.9.0.0/16"]}}], "to": [{"operation": {"ports": ["80"]}}]},
                {"to": [{"operation": {"ports": ["22"]}}]}]},
      {"name": "a", "namespace": "shop", "action": "ALLOW", "rules": [{}]}])";
  const MeshConfig config =
      parse_config(std::string(R"({"workloads": [)") + kWorkloads + R"(], "policies": )" + policies + "}");
  const Mesh mesh(config, "cluster.local", "node1");
  const Authorizer authorizer(config.policies);
  const auto denies = authorizer.kernel_denies(mesh);
  ASSERT_FALSE(denies.empty());
  for (const auto& d : denies) {
    const auto* w = mesh.by_ip(d.destination);
    ASSERT_NE(w, nullptr);
    const auto decision = authorizer.decide({std::nullopt, d.source.address, w, d.port ? d.port : uint16_t{1}});
    EXPECT_FALSE(decision.allowed) << d.destination.to_string() << ":" << d.port;
  }
}

}  // namespace
}  // namespace zmesh
