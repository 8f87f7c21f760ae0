// The same-node fast path, the proxy's side (docs/datapath.md "The fast path"). The proxy
// decides a pod's first connection to a pod of this node as always; when it allows it, the
// decision is cached in the kernel for that (source pod, destination pod, port), and later
// connects go pod to pod without the proxy. This class
//   - caches an ALLOW only if it was decided with the snapshot in force (DENY is never cached);
//   - on every new snapshot, voids the cache (a new generation) and decides each open
//     fast-path connection again with the same rules as a proxied one (ConnectionManager::
//     why_denied), resetting those now denied;
//   - reports the kernel's open and close events in the istio_tcp_* series and the access log,
//     as both reporters (source and destination: both pods are on this node), path "kernel".
// One executor: no locking.
#pragma once

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>

#include "context.h"
#include "zmesh/datapath.h"

namespace zmesh::proxy {

class FastPathCache {
 public:
  // `kernel` null: the fast path is off, every call does nothing.
  FastPathCache(ProxyContext& ctx, FastPath* kernel);

  // The proxy allowed `source_netns`'s connection to `target`, a pod of this node, with
  // `decided_with`.
  void allowed(const MeshSnapshot& decided_with, uint64_t source_netns, const tcp::endpoint& target);
  // After a new snapshot: a new generation, and the open fast-path connections decided again
  // (now, and once more shortly after, for a connect that read the old generation just before
  // it changed). Returns how many it reset now.
  size_t reauthorize();
  uint64_t revoked() const { return revoked_; }

  void start();  // reports the kernel's events from now on
  void stop();

 private:
  size_t decide_again(uint64_t generation);
  awaitable<void> report_events();
  void on_event(const FastPathEvent& event);

  ProxyContext& ctx_;
  FastPath* kernel_;
  uint64_t revoked_ = 0;
  uint64_t next_id_ = 1;
  uint64_t generation_ = 0;  // the last one this cache started
  std::unique_ptr<asio::posix::stream_descriptor> events_;
  asio::steady_timer again_;
  // Records of open fast-path connections, by their client end: what the close reports.
  std::map<std::pair<tcp::endpoint, tcp::endpoint>, ConnectionRecord> open_;
};

}  // namespace zmesh::proxy
