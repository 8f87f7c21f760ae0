// Inbound plaintext (see inbound_passthrough.h).
#include "inbound_passthrough.h"

#include <spdlog/spdlog.h>

#include "copy.h"
#include "labels.h"

namespace zmesh::proxy {

awaitable<void> InboundPassthrough::serve(tcp::socket client, uint64_t id) {
  ++ctx_.stats.inbound_plain_accepted;
  reset_on_close(client);
  const auto ends = ends_of(client);
  if (!ends) co_return;  // reset before we got to it: nothing to carry
  const auto& [peer, local] = *ends;
  const auto snap = ctx_.state.current();
  const Workload* target = snap->mesh.by_ip(local.address());
  ConnectionRecord record = new_record(id, Direction::Inbound, peer, local);
  auto refuse = [&](const std::string& why, const char* flags) {
    ++ctx_.stats.refused;
    spdlog::warn("[c{}] plaintext {} -> {} refused: {}", id, text(peer), text(local), why);
    abort_socket(client);
    record.error = why;
    record.labels.response_flags = flags;
    report(ctx_.telemetry, record, Outcome::Failed);
  };
  if (!target || !target->local) co_return refuse("not a workload of this node", "CONNECT");
  record.labels = istio_labels("destination", snap->mesh.by_ip(peer.address()), std::nullopt, *target, nullptr,
                               snap->mesh, local.port(), "none");
  const Authorization who{std::nullopt, peer.address(), local};
  if (auto why = ConnectionManager::why_denied(*snap, who)) {
    ++ctx_.stats.denied;
    co_return refuse(*why, "DENY");
  }
  tcp::socket upstream(ctx_.io);
  try {
    upstream = co_await ctx_.connect_to_pod(*target, local, peer.address(), "[c" + std::to_string(id) + "] plaintext");
    reset_on_close(upstream);
  } catch (const system_error& e) {
    co_return refuse(e.what(), "CONNECT");
  }
  if (auto why = ctx_.connections.denied_since(*snap, who)) {
    ++ctx_.stats.denied;
    co_return refuse(*why, "DENY");
  }
  report(ctx_.telemetry, record, Outcome::Opened);
  ConnectionManager::Grant grant(ctx_.connections, who, upstream,
                                 "[c" + std::to_string(id) + "] plaintext " + text(peer) + " -> " + text(local));
  const auto result = co_await relay(client, upstream, ctx_.options.splice);
  spdlog::info("[c{}] plaintext {} -> {} ({}): sent {} received {}{}{}", id, text(peer), text(local),
               target->identity.uri(), result.sent, result.received, result.error.empty() ? "" : ", error: ",
               result.error);
  record.request_bytes = result.sent;
  record.response_bytes = result.received;
  record.error = result.error;
  report(ctx_.telemetry, record, Outcome::Closed);
}

}  // namespace zmesh::proxy
