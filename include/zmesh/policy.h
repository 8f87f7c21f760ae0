// Authorization at L4 with Istio AuthorizationPolicy semantics, decided on the destination's
// node: DENY policies first (any match denies), then ALLOW policies (when a workload has any,
// one must match), else allow. Which workloads a policy applies to is its scope
// (include/zmesh/config.h); dry-run policies are never enforced.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "zmesh/config.h"
#include "zmesh/identity.h"
#include "zmesh/mesh.h"

namespace zmesh {

struct AccessRequest {
  std::optional<SpiffeId> source;      // nullopt for plaintext
  boost::asio::ip::address source_ip;  // as the destination node knows it
  const Workload* destination = nullptr;
  uint16_t port = 0;
  boost::asio::ip::address destination_ip{};  // unspecified: the destination's first address
};

struct AccessDecision {
  bool allowed = true;
  std::string reason;  // "denied by DENY policy default/block-app2", "no ALLOW policy matched", ...
};

// A DENY rule the kernel can enforce by itself: TCP connections from `source` to local pod
// address `destination` on `port` (0 = any). `policy` indexes the policy list it came from.
struct KernelDeny {
  IpBlock source;
  boost::asio::ip::address destination;
  uint16_t port = 0;
  size_t policy = 0;
};

class Authorizer {
 public:
  static constexpr const char* kRootNamespace = zmesh::kRootNamespace;
  explicit Authorizer(std::vector<AuthorizationPolicy> policies);
  AccessDecision decide(const AccessRequest& request) const;

  // The part of the DENY policies that needs no identity, for the kernel's deny map: rules of
  // at most a clause of source addresses and a clause of ports (Istio's `from` with only
  // ipBlocks, `to` with only ports), expanded over the local workloads they apply to. What
  // the kernel drops, decide() would deny too; the rest stays with decide().
  std::vector<KernelDeny> kernel_denies(const Mesh& mesh) const;
  const std::vector<AuthorizationPolicy>& policies() const { return policies_; }

 private:
  std::vector<AuthorizationPolicy> policies_;
};

// Istio's string match: exact, "*", "prefix*" or "*suffix".
bool matches_pattern(const std::string& pattern, const std::string& value);
// Whether `policy` applies to `workload` by its scope.
bool applies_to(const AuthorizationPolicy& policy, const Workload& workload);

}  // namespace zmesh
