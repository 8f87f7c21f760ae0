// Authorization at L4 with Istio AuthorizationPolicy semantics, decided on the destination's
// node: DENY policies first (any match denies), then ALLOW policies (when a workload has any,
// one must match), else allow. A policy applies to the workloads of its namespace named in its
// selector (all of them when the selector is empty); a policy in the root namespace
// ("istio-system") applies mesh-wide.
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
  static constexpr const char* kRootNamespace = "istio-system";
  explicit Authorizer(std::vector<AuthorizationPolicy> policies);
  AccessDecision decide(const AccessRequest& request) const;

  // The part of the DENY policies that needs no identity, for the kernel's deny map: rules
  // whose every source has only ipBlocks (or that have no `from`) and whose every operation
  // has only ports (or no `to`), expanded over the local workloads they select. What the
  // kernel drops, decide() would deny too; the rest stays with decide().
  std::vector<KernelDeny> kernel_denies(const Mesh& mesh) const;
  const std::vector<AuthorizationPolicy>& policies() const { return policies_; }

 private:
  std::vector<AuthorizationPolicy> policies_;
};

// Istio's string match: exact, "*", "prefix*" or "*suffix".
bool matches_pattern(const std::string& pattern, const std::string& value);

}  // namespace zmesh
