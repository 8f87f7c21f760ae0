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

class Authorizer {
 public:
  static constexpr const char* kRootNamespace = "istio-system";
  explicit Authorizer(std::vector<AuthorizationPolicy> policies);
  AccessDecision decide(const AccessRequest& request) const;

 private:
  std::vector<AuthorizationPolicy> policies_;
};

// Istio's string match: exact, "*", "prefix*" or "*suffix".
bool matches_pattern(const std::string& pattern, const std::string& value);

}  // namespace zmesh
