// Inbound HBONE (see inbound.h).
#include "inbound.h"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "copy.h"
#include "hbone_head.h"
#include "labels.h"

namespace zmesh::proxy {

awaitable<void> InboundHbone::serve(tcp::socket socket, uint64_t id) {
  ++ctx_.stats.inbound_hbone_accepted;
  const auto ends = ends_of(socket);
  if (!ends) co_return;  // reset before we got to it: nothing to carry
  const auto& [peer, local] = *ends;
  const auto snap = ctx_.state.current();
  const Workload* target = snap->mesh.by_ip(local.address());
  if (!target || !target->local) {
    ++ctx_.stats.refused;
    spdlog::warn("[c{}] HBONE from {} to {}: not a workload of this node, refused", id, text(peer), text(local));
    abort_socket(socket);
    co_return;
  }
  const uint64_t material = ctx_.certs.rotations();
  http2::TlsStream tls(std::move(socket), *ctx_.certs.server_context(target->identity));
  const std::string what = "handshake timed out";
  try {
    co_await with_deadline(tls.handshake(asio::ssl::stream_base::server),
                           ctx_.options.handshake_timeout, what);
  } catch (const system_error& e) {
    ctx_.handshake_failed(handshake_failure(e.code(), tls.native_handle()));
    spdlog::warn("[c{}] HBONE from {}: TLS handshake failed: {}{}", id, text(peer), e.code().message(),
                 verification_failure(tls.native_handle()));
    co_return;
  }
  const auto client = verified_peer_identity(tls.native_handle());
  if (const auto* why = std::get_if<std::string>(&client)) {
    ctx_.handshake_failed(HandshakeFailure::Certificate);
    spdlog::warn("[c{}] HBONE from {} refused: client certificate: {}", id, text(peer), *why);
    co_return;
  }
  ++ctx_.stats.server_handshakes;
  const SpiffeId client_id = std::get<SpiffeId>(client), server_id = target->identity;
  std::weak_ptr<InboundHbone> weak = weak_from_this();
  auto connection = http2::Connection::make(
      std::move(tls), http2::Connection::Role::Server,
      [weak, id, peer, client_id, server_id](std::shared_ptr<http2::Stream> stream) {
        if (auto self = weak.lock())
          asio::co_spawn(self->ctx_.io, self->request(std::move(stream), id, peer, client_id, server_id),
                         asio::detached);
      });
  served_.insert(connection);
  connection->keep_alive(ctx_.options.hbone_keepalive);
  connection->start([weak, connection]() mutable {
    if (auto self = weak.lock()) self->served_.erase(connection);
    connection.reset();
  });
  if (ctx_.certs.rotations() != material) connection->drain();  // as in connect_hbone
}

awaitable<void> InboundHbone::request(std::shared_ptr<http2::Stream> stream, uint64_t conn_id, tcp::endpoint peer,
                                      SpiffeId client, SpiffeId server) {
  auto self = shared_from_this();
  ConnectionManager::Active active(ctx_.connections);
  const std::string tag = "[c" + std::to_string(conn_id) + "/s" + std::to_string(stream->id()) + "]";
  ConnectionRecord record = new_record(conn_id, Direction::Inbound, peer);
  record.labels.source_principal = client.uri();
  record.labels.source_workload_namespace = client.namespace_;
  record.labels.destination_principal = server.uri();
  record.labels.connection_security_policy = "mutual_tls";
  auto refuse = [&](int status, const std::string& why) {
    ++ctx_.stats.refused;
    spdlog::warn("{} HBONE {} from {} ({}) -> {}: {}", tag, status, text(peer), client.uri(), stream->authority(),
                 why);
    stream->respond(status, false);
    record.error = why;
    record.labels.response_flags = status == 401 ? "DENY" : "CONNECT";
    report(ctx_.telemetry, record, Outcome::Failed);
  };
  if (stream->method() != "CONNECT") co_return refuse(400, "method " + stream->method() + " is not CONNECT");
  const auto target = hbone::parse_authority(stream->authority());
  if (!target) co_return refuse(400, "malformed :authority (want ip:port)");
  const auto snap = ctx_.state.current();
  const Workload* workload = snap->mesh.by_ip(target->address());
  if (!workload || !workload->local) co_return refuse(400, "the authority is not a pod on this node");
  if (workload->identity != server) co_return refuse(400, "the pod is " + workload->identity.uri() +
                                                              ", not the identity this connection presented");
  // The client node says which address the connection came from (policies match sources by
  // address, and this node sees only the client node's). It is believed only as far as it is
  // consistent: an address of a known workload must be that workload's, with the identity the
  // client's certificate proves; an address the mesh does not know is taken as given (the
  // client node is trusted for what it says of its own pods; docs/security.md).
  std::optional<asio::ip::address> claimed;
  try {
    claimed = hbone::forwarded_for(stream->forwarded());
  } catch (const std::invalid_argument& e) {
    co_return refuse(400, e.what());
  }
  const asio::ip::address source_ip = claimed.value_or(unmapped(peer.address()));
  record.source = tcp::endpoint(source_ip, peer.port());
  record.destination = *target;
  const Workload* source = snap->mesh.by_ip(source_ip);
  if (claimed && source && source->identity != client)
    co_return refuse(401, "forwarded for=" + source_ip.to_string() + " is workload " + key_of(source->config) +
                              " (" + source->identity.uri() + "), not the client certificate's " + client.uri());
  record.labels = istio_labels("destination", source && source->identity == client ? source : nullptr, client,
                               *workload, nullptr, snap->mesh, target->port(), "mutual_tls");
  // The address the pod sees: a claimed one only when it is a workload proven by the client's
  // certificate; else the client node's own (zmesh would otherwise spoof, for a node's say-so,
  // any address at all to the pod, past its NetworkPolicies and IP allow-lists).
  const asio::ip::address pod_sees = source && source->identity == client ? source_ip : unmapped(peer.address());
  const Authorization who{client, source_ip, *target};
  if (auto why = ConnectionManager::why_denied(*snap, who)) {
    ++ctx_.stats.denied;
    co_return refuse(401, *why);
  }
  tcp::socket upstream(ctx_.io);
  try {
    upstream = co_await ctx_.connect_to_pod(*workload, *target, pod_sees, tag);
    reset_on_close(upstream);
  } catch (const system_error& e) {
    co_return refuse(503, e.code() == asio::error::timed_out ? std::string(e.what()) : e.code().message());
  }
  if (auto why = ctx_.connections.denied_since(*snap, who)) {
    ++ctx_.stats.denied;
    co_return refuse(401, *why);
  }
  stream->respond(200, true);
  ConnectionManager::Grant grant(ctx_.connections, who, upstream,
                                 tag + " " + text(peer) + " (" + client.uri() + ") -> " + text(*target));
  report(ctx_.telemetry, record, Outcome::Opened);
  const auto result = co_await relay(upstream, stream);
  spdlog::info("{} inbound {} ({}) -> {} ({}): sent {} received {}{}{}", tag, text(peer), client.uri(),
               text(*target), server.uri(), result.received, result.sent, result.error.empty() ? "" : ", error: ",
               result.error);
  record.request_bytes = result.received;  // into the pod
  record.response_bytes = result.sent;     // out of it
  record.error = result.error;
  report(ctx_.telemetry, record, Outcome::Closed);
}

void InboundHbone::drain() {
  for (auto& connection : served_) connection->drain();
}

void InboundHbone::close() {
  auto served = served_;  // close() ends them, and their end erases them from served_
  for (auto& connection : served) connection->close();
}

size_t InboundHbone::retire() {
  size_t retired = 0;
  for (auto& connection : served_) retired += connection->drain();
  return retired;
}

}  // namespace zmesh::proxy
