// Authorization at L4 with Istio AuthorizationPolicy semantics, decided on the destination's
// node: DENY policies first (any match denies), then ALLOW policies (when a workload has any,
// one must match), else allow. Which workloads a policy applies to is its scope
// (include/zmesh/config.h); dry-run policies are never enforced.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "zmesh/config.h"
#include "zmesh/identity.h"
#include "zmesh/mesh.h"
#include "zmesh/shared_map.h"

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
// address `destination` on `port` (0 = any). `policy` is the id of the policy it came from.
struct KernelDeny {
  IpBlock source;
  boost::asio::ip::address destination;
  uint16_t port = 0;
  uint32_t policy = 0;
};

// The policies, indexed by where they apply, so that a decision reads the few that can apply
// to its destination (not every policy of the cluster), and cheap to copy and change one
// policy of (SharedMap), as Mesh is: the controller makes the next version from the last.
class Authorizer {
 public:
  static constexpr const char* kRootNamespace = zmesh::kRootNamespace;
  struct Entry {
    std::shared_ptr<const AuthorizationPolicy> policy;
    uint32_t id = 0;  // the policy's for as long as its key is in use: the kernel's rule id, the listing's ruleId
    bool operator==(const Entry&) const = default;
  };

  Authorizer() = default;
  explicit Authorizer(const std::vector<AuthorizationPolicy>& policies);  // each put, in order
  // Replaces the policy of the same namespace/name (which keeps its id); removal of an unknown
  // key does nothing.
  void put(std::shared_ptr<const AuthorizationPolicy> policy);
  void remove(const std::string& key);

  AccessDecision decide(const AccessRequest& request) const;

  // The part of the DENY policies that needs no identity, for the kernel's deny map: rules of
  // at most a clause of source addresses and a clause of ports (Istio's `from` with only
  // ipBlocks, `to` with only ports), expanded over the local workloads they apply to. What
  // the kernel drops, decide() would deny too; the rest stays with decide().
  std::vector<KernelDeny> kernel_denies(const Mesh& mesh) const;
  const Entry* find(const std::string& key) const { return by_key_.find(key); }
  std::vector<const Entry*> policies() const;  // sorted by key
  size_t size() const { return by_key_.size(); }

 private:
  using Entries = std::shared_ptr<const std::vector<Entry>>;  // sorted by key
  static std::string scope_key(const AuthorizationPolicy& p);
  void index(const Entry& entry, bool add);
  SharedMap<std::string, Entry> by_key_;
  // Where decide() looks: "" holds the GLOBAL policies, "namespace" that namespace's NAMESPACE
  // policies and those selecting by name; istiod's WORKLOAD_SELECTOR ones are found through
  // the workload that lists them. A namespace holds few, a cluster thousands.
  SharedMap<std::string, Entries> scoped_;
  std::shared_ptr<const std::map<std::string, Entry>> denies_;  // the enforced DENYs, for the kernel
  uint32_t next_id_ = 1;
};

// Istio's string match: exact, "*", "prefix*" or "*suffix".
bool matches_pattern(const std::string& pattern, const std::string& value);
// Whether `policy` applies to `workload` by its scope.
bool applies_to(const AuthorizationPolicy& policy, const Workload& workload);

}  // namespace zmesh
