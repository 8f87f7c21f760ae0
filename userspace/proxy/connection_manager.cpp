// Granted and active connections (see connection_manager.h).
#include "connection_manager.h"

#include <spdlog/spdlog.h>

#include <vector>

namespace zmesh::proxy {

std::optional<std::string> ConnectionManager::why_denied(const MeshSnapshot& snap, const Authorization& who) {
  const Workload* w = snap.mesh.by_ip(who.destination.address());
  if (!w || !w->local) return "the destination is not a workload of this node";
  if (!who.source && w->config.mtls_strict) return "the workload requires mTLS (STRICT) and the source has no identity";
  if (const auto d = snap.authorizer.decide({who.source, who.source_ip, w, who.destination.port(), who.destination.address()}); !d.allowed)
    return d.reason;
  return std::nullopt;
}

std::optional<std::string> ConnectionManager::denied_since(const MeshSnapshot& decided_with,
                                                           const Authorization& who) const {
  const auto now = state_.current();
  if (now->generation == decided_with.generation) return std::nullopt;
  return why_denied(*now, who);
}

ConnectionManager::Grant::Grant(ConnectionManager& manager, Authorization who, tcp::socket& upstream, std::string tag)
    : manager_(manager), id_(manager.next_grant_++) {
  manager_.grants_.emplace(id_, Entry{std::move(who), &upstream, std::move(tag)});
}

ConnectionManager::Grant::~Grant() { manager_.grants_.erase(id_); }

size_t ConnectionManager::reauthorize() {
  const auto snap = state_.current();
  std::vector<tcp::socket*> revoke;
  for (const auto& [id, g] : grants_) {
    const auto why = why_denied(*snap, g.who);
    if (!why) continue;
    spdlog::warn("{} closed: {} (config generation {})", g.tag, *why, snap->generation);
    revoke.push_back(g.upstream);
  }
  for (auto* socket : revoke) abort_socket(*socket);
  revoked_ += revoke.size();
  return revoke.size();
}

ConnectionManager::Active::~Active() {
  if (--manager_.active_ == 0 && manager_.idle_) manager_.idle_->open();
}

void ConnectionManager::draining(const asio::any_io_executor& executor) {
  idle_ = std::make_unique<Latch>(executor);
  if (active_ == 0) idle_->open();
}

awaitable<void> ConnectionManager::idle() {
  if (idle_) co_await idle_->wait();
}

}  // namespace zmesh::proxy
