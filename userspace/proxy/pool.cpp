// The HBONE connection pool (see pool.h).
#include "pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "zmesh/identity.h"

namespace zmesh::proxy {
namespace {

// RFC 7239: `for="10.244.1.2"`, `for="[fd00::2]"`.
std::string forwarded_header(const std::string& source_ip) {
  const bool v6 = source_ip.find(':') != std::string::npos;
  return "for=\"" + (v6 ? "[" + source_ip + "]" : source_ip) + "\"";
}

}  // namespace

awaitable<std::shared_ptr<http2::Stream>> HbonePool::open_stream(const Key& key, const tcp::endpoint& node_address,
                                                                 const std::string& authority,
                                                                 const std::string& source_ip) {
  for (;;) {
    auto& conns = pool_[key];
    std::erase_if(conns, [](const auto& c) { return !c->usable() && c->active_streams() == 0; });
    std::shared_ptr<http2::Connection> best;
    for (const auto& c : conns)
      if (c->usable() && (!best || c->active_streams() < best->active_streams())) best = c;
    if (best) {
      ++ctx_.stats.streams_opened;
      const http2::Connection::Headers headers{{"forwarded", forwarded_header(source_ip)}};
      std::shared_ptr<http2::Stream> stream;
      auto open = [&]() -> awaitable<void> { stream = co_await best->open(authority, headers); };
      const std::string what = "no HBONE response from node " + key.node + " in time";
      try {
        co_await with_deadline(open(), ctx_.options.handshake_timeout, what);
      } catch (const system_error& e) {
        // A peer that stopped answering (gone without a reset): new streams go elsewhere.
        if (e.code() == asio::error::timed_out) best->close();
        throw;
      }
      co_return stream;
    }
    if (auto it = connecting_.find(key); it != connecting_.end()) {
      auto pending = it->second;  // another coroutine is connecting for this key: share it
      co_await pending->done.wait();
      continue;
    }
    auto pending = std::make_shared<Pending>(ctx_.io.get_executor());
    connecting_[key] = pending;
    try {
      auto connection = co_await connect(key, node_address);
      pool_[key].push_back(connection);
    } catch (...) {
      connecting_.erase(key);
      pending->done.open();
      throw;
    }
    connecting_.erase(key);
    pending->done.open();
  }
}

awaitable<std::shared_ptr<http2::Connection>> HbonePool::connect(const Key& key, const tcp::endpoint& target) {
  auto socket = co_await proxy::connect(target, ctx_.options.proxy_mark, ctx_.options.connect_timeout);
  const uint64_t material = ctx_.certs.rotations();
  http2::TlsStream tls(std::move(socket), *ctx_.certs.client_context(key.source));
  const std::string what = "TLS handshake with " + text(target) + " timed out";
  try {
    co_await with_deadline(tls.handshake(asio::ssl::stream_base::client), ctx_.options.handshake_timeout, what);
  } catch (const system_error& e) {
    ctx_.handshake_failed(handshake_failure(e.code(), tls.native_handle()));
    throw system_error(e.code(), "TLS handshake with " + text(target) + ": " + e.code().message() +
                                     verification_failure(tls.native_handle()));
  }
  const auto peer = verified_peer_identity(tls.native_handle());
  if (const auto* why = std::get_if<std::string>(&peer)) {
    ctx_.handshake_failed(HandshakeFailure::Certificate);
    throw IdentityError("server " + text(target) + " rejected: " + *why);
  }
  // An unknown pod inside a pod CIDR (key.destination has no namespace): any identity of
  // this trust domain; else exactly the workload's.
  const bool unknown = key.destination.namespace_.empty();
  if (unknown ? std::get<SpiffeId>(peer).trust_domain != key.destination.trust_domain
              : std::get<SpiffeId>(peer) != key.destination) {
    ctx_.handshake_failed(HandshakeFailure::Identity);
    throw IdentityError("server " + text(target) + " is " + std::get<SpiffeId>(peer).uri() + ", expected " +
                        key.destination.uri());
  }
  ++ctx_.stats.client_handshakes;
  auto connection = http2::Connection::make(std::move(tls), http2::Connection::Role::Client);
  connection->keep_alive(ctx_.options.hbone_keepalive);
  connection->start();
  // A CA rotation while this handshake ran: it used the old material, and retire() could not
  // see it. It takes no stream; the pool makes a new one.
  if (ctx_.certs.rotations() != material) connection->drain();
  spdlog::info("hbone: connected to {} as {} (server {}, node {})", text(target), key.source.uri(),
               key.destination.uri(), key.node);
  co_return connection;
}

awaitable<void> HbonePool::reap_idle() {
  asio::steady_timer timer(ctx_.io);
  while (!draining_) {
    timer.expires_after(std::min(ctx_.options.pool_idle_timeout / 2, std::chrono::milliseconds(1000)));
    co_await timer.async_wait(use_tuple);
    const auto now = std::chrono::steady_clock::now();
    std::erase_if(pool_, [&](const auto& entry) { return entry.second.empty() && !connecting_.contains(entry.first); });
    for (auto& [key, conns] : pool_) {
      size_t idle = 0;
      std::erase_if(conns, [&](const std::shared_ptr<http2::Connection>& c) {
        if (c->active_streams() != 0) return false;
        if (!c->usable()) return true;
        const bool expired = now - c->idle_since() >= ctx_.options.pool_idle_timeout;
        if (!expired && ++idle <= kMaxIdlePerKey) return false;
        spdlog::info("hbone: closing {} connection to node {} ({} -> {})", expired ? "idle" : "a surplus idle", key.node,
                     key.source.uri(), key.destination.uri());
        c->drain();
        return true;
      });
    }
  }
}

void HbonePool::drain() {
  draining_ = true;
  for (auto& [key, conns] : pool_)
    for (auto& c : conns) c->drain();
}

void HbonePool::close() {
  for (auto& [key, conns] : pool_)
    for (auto& c : conns) c->close();
}

size_t HbonePool::retire() {
  size_t retired = 0;
  for (auto& [key, conns] : pool_)
    for (auto& c : conns) retired += c->drain();
  return retired;
}

void HbonePool::count(ProxyStats& stats) const {
  for (const auto& [key, conns] : pool_)
    for (const auto& c : conns)
      if (c->usable()) {
        ++stats.pool_connections;
        stats.pool_streams += c->active_streams();
      }
}

}  // namespace zmesh::proxy
