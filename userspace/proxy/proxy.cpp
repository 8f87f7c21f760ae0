// The node proxy (see include/zmesh/proxy.h): the composition of its parts, one file each as
// ztunnel splits its proxy — the listeners and their accept loops here; outbound.cpp,
// inbound.cpp (HBONE), inbound_passthrough.cpp (plaintext), pool.cpp (HBONE connections
// this node opened), copy.cpp (relays), connection_manager.cpp (grants, reauthorize, drain),
// labels.cpp (Istio labels and reports).
#include "zmesh/proxy.h"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <functional>

#include "connection_manager.h"
#include "context.h"
#include "fast_path.h"
#include "inbound.h"
#include "inbound_passthrough.h"
#include "net.h"
#include "outbound.h"
#include "pool.h"

namespace zmesh {

using namespace proxy;

const char* to_string(HandshakeFailure why) {
  switch (why) {
    case HandshakeFailure::Timeout: return "timeout";
    case HandshakeFailure::Certificate: return "certificate";
    case HandshakeFailure::Identity: return "identity";
    case HandshakeFailure::Protocol: return "protocol";
  }
  return "unknown";
}

struct Proxy::Impl : std::enable_shared_from_this<Proxy::Impl> {
  explicit Impl(ProxyInputs& in)
      : options(in.options),
        connections(in.state),
        context{in.io, in.state, in.certificates, in.telemetry, options, stats, connections},
        pool(context),
        fast_path(context, in.fast_path),
        outbound(context, in.originals, pool, fast_path),
        inbound(std::make_shared<InboundHbone>(context)),
        passthrough(context) {}

  ProxyOptions options;
  ProxyStats stats;
  ConnectionManager connections;
  ProxyContext context;
  HbonePool pool;
  FastPathCache fast_path;
  Outbound outbound;
  std::shared_ptr<InboundHbone> inbound;
  InboundPassthrough passthrough;
  std::vector<tcp::acceptor> outbound_listeners, hbone_listeners, plain_listeners;
  uint64_t next_id = 1;

  using Handler = std::function<awaitable<void>(tcp::socket, uint64_t)>;

  // One coroutine per accepted connection, counted as active for its life. Accept errors
  // (EMFILE and the like) back off instead of spinning on the same error.
  awaitable<void> accept_loop(tcp::acceptor& acceptor, Handler handler) {
    auto self = shared_from_this();
    auto backoff = std::chrono::milliseconds(10);
    asio::steady_timer timer(context.io);
    while (acceptor.is_open()) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) break;
      if (ec) {
        spdlog::warn("proxy: accept on {} failed: {}; retrying in {} ms", text(acceptor.local_endpoint()),
                     ec.message(), backoff.count());
        timer.expires_after(backoff);
        co_await timer.async_wait(use_tuple);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
        continue;
      }
      backoff = std::chrono::milliseconds(10);
      no_delay(socket);
      const uint64_t id = next_id++;
      asio::co_spawn(
          context.io,
          [self, handler, id, s = std::move(socket)]() mutable -> awaitable<void> {
            ConnectionManager::Active active(self->connections);
            try {
              co_await handler(std::move(s), id);
            } catch (const std::exception& e) {
              spdlog::warn("[c{}] {}", id, e.what());
            }
          },
          asio::detached);
    }
  }

  void close_listeners() {
    error_code ignored;
    for (auto* list : {&outbound_listeners, &hbone_listeners, &plain_listeners})
      for (auto& a : *list) a.close(ignored);
  }
};

Proxy::Proxy(ProxyInputs inputs) : impl_(std::make_shared<Impl>(inputs)) {
  auto& impl = *impl_;
  const auto& o = impl.options;
  for (const auto& ip : o.outbound_addresses) impl.outbound_listeners.push_back(listen(inputs.io, {ip, o.outbound_port}, false));
  impl.hbone_listeners.push_back(listen(inputs.io, {asio::ip::address_v6::any(), o.inbound_hbone_port}, true));
  impl.plain_listeners.push_back(listen(inputs.io, {asio::ip::address_v6::any(), o.inbound_plain_port}, true));
}

Proxy::~Proxy() { impl_->fast_path.stop_deciding(); }

void Proxy::start() {
  auto& impl = *impl_;
  auto& io = impl.context.io;
  for (auto& a : impl.outbound_listeners)
    asio::co_spawn(io, impl.accept_loop(a, [&impl](tcp::socket s, uint64_t id) { return impl.outbound.serve(std::move(s), id); }),
                   asio::detached);
  for (auto& a : impl.hbone_listeners)
    asio::co_spawn(io, impl.accept_loop(a, [&impl](tcp::socket s, uint64_t id) { return impl.inbound->serve(std::move(s), id); }),
                   asio::detached);
  for (auto& a : impl.plain_listeners)
    asio::co_spawn(io, impl.accept_loop(a, [&impl](tcp::socket s, uint64_t id) { return impl.passthrough.serve(std::move(s), id); }),
                   asio::detached);
  asio::co_spawn(io, [impl = impl_]() -> awaitable<void> { co_await impl->pool.reap_idle(); }, asio::detached);
  impl.fast_path.start();
}

void Proxy::drain(std::chrono::milliseconds deadline, std::function<void()> done) {
  using namespace asio::experimental::awaitable_operators;
  auto impl = impl_;
  impl->close_listeners();
  impl->inbound->drain();
  impl->pool.drain();
  impl->connections.draining(impl->context.io.get_executor());
  impl->fast_path.stop_deciding();
  asio::co_spawn(
      impl->context.io,
      [impl, deadline, done]() -> awaitable<void> {
        asio::steady_timer timer(impl->context.io, deadline);
        co_await (impl->connections.idle() || timer.async_wait(use_tuple));
        if (impl->connections.active())
          spdlog::warn("proxy: drain deadline passed with {} connections open; closing them", impl->connections.active());
        impl->inbound->close();
        impl->pool.close();
        done();
      },
      asio::detached);
}

ProxyStats Proxy::stats() const {
  ProxyStats s = impl_->stats;
  s.active = impl_->connections.active();
  s.revoked = impl_->connections.revoked() + impl_->fast_path.revoked();
  impl_->pool.count(s);
  s.served_connections = impl_->inbound->served();
  return s;
}

size_t Proxy::reauthorize() { return impl_->connections.reauthorize() + impl_->fast_path.reauthorize(); }

size_t Proxy::retire_connections() {
  const size_t retired = impl_->pool.retire() + impl_->inbound->retire();
  spdlog::info("proxy: {} HBONE connections retired: their open streams finish, new ones handshake again", retired);
  return retired;
}

}  // namespace zmesh
