// The same-node fast path, the proxy's side (docs/datapath.md "The fast path"). The proxy
// decides a pod's first connection to a pod of this node as always; when it allows it, the
// decision is cached in the kernel for that (source pod, destination pod, port), and later
// connects go pod to pod without the proxy. This class
//   - caches an ALLOW only if it was decided with the snapshot in force (DENY is never cached);
//   - on every new snapshot, voids the cache (a new generation) and decides each open
//     fast-path connection again with the same rules as a proxied one (ConnectionManager::
//     why_denied), revoking those now denied (dropped by tc, the client's socket destroyed);
//   - voids the cache when the proxy stops (drain);
//   - reports the kernel's open and close events in the istio_tcp_* series and the access log,
//     as both reporters (source and destination: both pods are on this node), path "kernel".
// allowed() is called by every proxy worker, each on its own thread; the rest runs on the
// daemon's executor (`io`).
#pragma once

#include <boost/asio/posix/stream_descriptor.hpp>
#include <map>
#include <memory>
#include <mutex>

#include "context.h"
#include "zmesh/datapath.h"

namespace zmesh::proxy {

class FastPathCache {
 public:
  // `kernel` null: the fast path is off, every call does nothing.
  FastPathCache(asio::io_context& io, const MeshState& state, Telemetry& telemetry, FastPath* kernel);
  FastPathCache(const FastPathCache&) = delete;
  FastPathCache& operator=(const FastPathCache&) = delete;

  // The proxy allowed `source`'s connection (from its netns `source_netns`) to `target`, a
  // pod of this node, with `decided_with`.
  void allowed(const MeshSnapshot& decided_with, const Workload& source, uint64_t source_netns,
               const tcp::endpoint& target);
  // After a new snapshot: a new generation, and the open fast-path connections decided again.
  // Returns how many it revoked.
  size_t reauthorize();
  uint64_t revoked() const { return revoked_; }

  void start();  // decides what a previous daemon let go, reports the kernel's events from now on
  void stop_deciding();  // every cached verdict void: no fast path while no zmeshd decides
  ~FastPathCache();

 private:
  size_t decide_again(uint64_t generation);
  awaitable<void> report_events();
  void on_event(const FastPathEvent& event);

  asio::io_context& io_;
  const MeshState& state_;
  Telemetry& telemetry_;
  FastPath* kernel_;
  // Held from a worker's check that its decision is current until its verdict is stamped with
  // the kernel's generation, and while the executor starts a new generation: a verdict of an
  // older snapshot can never carry the newer generation.
  std::mutex generation_mutex_;
  uint64_t revoked_ = 0;
  uint64_t next_id_ = 1;
  // The last generation this cache started, and the snapshot in force when it did: only a
  // decision of that snapshot is cached, and only under that generation (one that the
  // datapath started since, at an enrolment, voids it). Both under generation_mutex_.
  uint64_t generation_ = 0;
  uint64_t generation_snapshot_ = 0;
  bool stopped_ = false;  // stop_deciding() was called: nothing is cached any more
  std::unique_ptr<asio::posix::stream_descriptor> events_;
  // Records of open fast-path connections, by their client end: what the close reports.
  std::map<std::pair<tcp::endpoint, tcp::endpoint>, ConnectionRecord> open_;
};

}  // namespace zmesh::proxy
