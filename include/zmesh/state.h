// The mesh state every lookup reads: one immutable snapshot of the mesh and its policies,
// published whole by the controller (the one writer) and taken per connection by the proxy. The state module's public face; Mesh (mesh.h) is its index.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "zmesh/config.h"
#include "zmesh/mesh.h"
#include "zmesh/policy.h"

namespace zmesh {

// One version of everything the connection path reads: the mesh and its policies. Immutable;
// a connection keeps the snapshot it started with (so its Workload pointers stay valid), new
// connections take the newest.
struct MeshSnapshot {
  MeshSnapshot(Mesh m, Authorizer a, uint64_t gen) : mesh(std::move(m)), authorizer(std::move(a)), generation(gen) {}
  // A whole config at once (tests, tools); the controller makes each next one from the last.
  MeshSnapshot(const MeshConfig& config, const std::string& trust_domain, const std::string& node, uint64_t gen)
      : MeshSnapshot(Mesh(config, trust_domain, node), Authorizer(config.policies), gen) {}
  const Mesh mesh;
  const Authorizer authorizer;
  const uint64_t generation;  // 1 for the first, +1 per accepted change
};

// Where the proxy finds the current snapshot. The controller publishes on the daemon's thread;
// every proxy worker reads, each on its own thread.
class MeshState {
 public:
  std::shared_ptr<const MeshSnapshot> current() const {
    std::lock_guard lock(mutex_);
    return current_;
  }
  void publish(std::shared_ptr<const MeshSnapshot> next) {
    std::lock_guard lock(mutex_);
    current_.swap(next);  // the old snapshot is let go outside the lock
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const MeshSnapshot> current_;
};

}  // namespace zmesh
