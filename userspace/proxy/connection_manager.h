// The connections the proxy is serving (ztunnel's connection_manager.rs): those this node
// authorized as the destination's node are registered for their life, so that a new snapshot
// that denies them takes them back (reauthorize); and all of them are counted, for drain.
// One per proxy worker, used on its thread only: no locking.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "net.h"
#include "zmesh/identity.h"
#include "zmesh/state.h"

namespace zmesh::proxy {

// Who wants to reach which pod of this node: the decision's inputs.
struct Authorization {
  std::optional<SpiffeId> source;  // nullopt: plaintext, or the node itself
  asio::ip::address source_ip;
  tcp::endpoint destination;
};

class ConnectionManager {
 public:
  explicit ConnectionManager(const MeshState& state) : state_(state) {}

  // Why `snap` would not let this connection through; nullopt when it would. The one place
  // that decides a connection to a pod of this node, first time and on every change.
  static std::optional<std::string> why_denied(const MeshSnapshot& snap, const Authorization& who);
  // After a wait (the connect to the pod), a change may have landed since `decided_with` was
  // taken: decide again with what is in force now, before the connection is granted.
  std::optional<std::string> denied_since(const MeshSnapshot& decided_with, const Authorization& who) const;

  // Registers `upstream` (the socket to the local pod) for as long as the Grant lives:
  // reauthorize() resets it when a new snapshot denies `who`.
  class Grant {
   public:
    Grant(ConnectionManager& manager, Authorization who, tcp::socket& upstream, std::string tag);
    ~Grant();
    Grant(const Grant&) = delete;
    Grant& operator=(const Grant&) = delete;

   private:
    ConnectionManager& manager_;
    uint64_t id_;
  };

  // Closes (reset, both ends) the granted connections the current snapshot denies; how many.
  size_t reauthorize();
  uint64_t revoked() const { return revoked_; }

  // A connection being served, counted for its life; drain waits for none to be left.
  class Active {
   public:
    explicit Active(ConnectionManager& manager) : manager_(manager) { ++manager_.active_; }
    ~Active();
    Active(const Active&) = delete;
    Active& operator=(const Active&) = delete;

   private:
    ConnectionManager& manager_;
  };
  uint64_t active() const { return active_; }
  // From now on, the end of the last active connection opens `idle()`.
  void draining(const asio::any_io_executor& executor);
  awaitable<void> idle();

 private:
  struct Entry {
    Authorization who;
    tcp::socket* upstream;
    std::string tag;
  };
  const MeshState& state_;
  std::map<uint64_t, Entry> grants_;
  uint64_t next_grant_ = 1;
  uint64_t revoked_ = 0;
  uint64_t active_ = 0;
  std::unique_ptr<Latch> idle_;
};

}  // namespace zmesh::proxy
