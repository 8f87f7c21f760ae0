// The same-node fast path, the proxy's side (see fast_path.h).
#include "fast_path.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "labels.h"
#include "zmesh/datapath_error.h"

namespace zmesh::proxy {

FastPathCache::FastPathCache(asio::io_context& io, const MeshState& state, Telemetry& telemetry, FastPath* kernel)
    : io_(io), state_(state), telemetry_(telemetry), kernel_(kernel) {}

void FastPathCache::allowed(const MeshSnapshot& decided_with, const Workload& source, uint64_t source_netns,
                            const tcp::endpoint& target) {
  // A decision of an older snapshot is not cached: the generation it would be stamped with
  // may already be the newer snapshot's. Nor for a pod whose veth is unknown: tc could not
  // tell its SYN from a forged one, and would drop it.
  if (!kernel_ || !source_netns || source.config.host_veth.empty()) return;
  std::lock_guard lock(generation_mutex_);
  if (stopped_ || generation_snapshot_ != decided_with.generation ||
      state_.current()->generation != decided_with.generation)
    return;
  try {
    kernel_->allow({source_netns, target}, generation_);
  } catch (const DatapathError& e) {
    spdlog::warn("fast path: {}; the connection keeps going through the proxy", e.what());
  }
}

size_t FastPathCache::reauthorize() {
  if (!kernel_) return 0;
  try {
    // Published before reauthorize is called: the snapshot this generation is for.
    const uint64_t snapshot = state_.current()->generation;
    std::lock_guard lock(generation_mutex_);
    generation_ = kernel_->invalidate();
    generation_snapshot_ = snapshot;
  } catch (const DatapathError& e) {
    spdlog::error("fast path: {}", e.what());
    return 0;
  }
  // A connection recorded after this sweep read the map has its generation checked by sockops
  // against the new one: nothing slips between the two.
  return decide_again(generation_);
}

size_t FastPathCache::decide_again(uint64_t generation) {
  const auto snap = state_.current();
  size_t closed = 0;
  for (const auto& c : kernel_->connections()) {
    if (c.generation >= generation) continue;
    const Workload* source = snap->mesh.by_ip(c.client.address());
    std::optional<std::string> why;
    if (!source || !source->local)
      why = "the source is no longer a workload of this node";
    else
      why = ConnectionManager::why_denied(*snap, {source->identity, c.client.address(), c.server});
    if (!why) {
      kernel_->reallow(c, generation);
      continue;
    }
    spdlog::warn("[fast path] {} -> {} (same node) closed: {} (config generation {})", text(c.client), text(c.server),
                 *why, snap->generation);
    try {
      kernel_->close(c);
    } catch (const DatapathError& e) {
      spdlog::error("[fast path] {}; its packets are dropped", e.what());
    }
    ++closed;
  }
  revoked_ += closed;
  return closed;
}

void FastPathCache::start() {
  if (!kernel_) return;
  // Fast-path connections outlive a restart (they never went through a zmeshd): the ones a
  // previous daemon let go are decided again with this daemon's state.
  reauthorize();
  events_ = std::make_unique<asio::posix::stream_descriptor>(io_, ::dup(kernel_->events_fd()));
  asio::co_spawn(io_, report_events(), asio::detached);
}

void FastPathCache::stop_deciding() {
  if (!kernel_) return;
  // No zmeshd, no decisions: the pairs it allowed go back to the proxy, which is not there
  // (fail closed), until a daemon runs again. (A crashed daemon cannot do this:
  // docs/datapath.md.) Events are still reported while the proxy drains.
  try {
    std::lock_guard lock(generation_mutex_);
    stopped_ = true;
    kernel_->invalidate();
  } catch (const DatapathError& e) {
    spdlog::error("fast path: {}", e.what());
  }
}

FastPathCache::~FastPathCache() {
  error_code ignored;
  if (events_) events_->close(ignored);
}

awaitable<void> FastPathCache::report_events() {
  while (events_ && events_->is_open()) {
    auto [ec] = co_await events_->async_wait(asio::posix::descriptor_base::wait_read, use_tuple);
    if (ec) break;
    try {
      kernel_->take_events([this](const FastPathEvent& e) {
        try {  // never through libbpf's C callback
          on_event(e);
        } catch (const std::exception& error) {
          spdlog::error("fast path: an event of {} -> {} not reported: {}", text(e.client), text(e.server), error.what());
        }
      });
    } catch (const DatapathError& e) {
      spdlog::error("fast path: {}", e.what());
    }
  }
}

void FastPathCache::on_event(const FastPathEvent& e) {
  const auto snap = state_.current();
  const Mesh& mesh = snap->mesh;
  const auto key = std::make_pair(e.client, e.server);
  ConnectionRecord record;
  if (auto open = open_.find(key); open != open_.end()) {
    record = std::move(open->second);
    open_.erase(open);
  } else {
    const Workload* source = mesh.by_ip(e.client.address());
    const Workload* destination = mesh.by_ip(e.server.address());
    if (!destination) return;  // left the mesh since: nothing to name it by
    record = new_record(next_id_++, Direction::Outbound, e.client, e.server);
    record.path = "kernel";
    record.labels = istio_labels("source", source, source ? std::optional(source->identity) : std::nullopt, *destination,
                                 nullptr, mesh, e.server.port(), "none");
    const auto age = std::chrono::duration_cast<std::chrono::system_clock::duration>(e.duration);
    record.started -= age;
    record.started_steady -= std::chrono::duration_cast<std::chrono::steady_clock::duration>(e.duration);
  }
  if (e.kind == FastPathEvent::Kind::Opened) {
    report(telemetry_, record, Outcome::Opened, true);
    open_.emplace(key, std::move(record));
    return;
  }
  record.request_bytes = e.sent;
  record.response_bytes = e.received;
  if (!e.established) {
    record.labels.response_flags = "UF";
    record.error = "the connection to the pod failed (kernel path)";
    report(telemetry_, record, Outcome::Failed, true);
    return;
  }
  spdlog::info("[fast path] {} ({}) -> {} ({}): sent {} received {}", text(e.client), record.labels.source_principal,
               text(e.server), record.labels.destination_principal, e.sent, e.received);
  report(telemetry_, record, Outcome::Closed, true);
}

}  // namespace zmesh::proxy
