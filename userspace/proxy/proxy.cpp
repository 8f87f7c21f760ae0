// The node proxy (see include/zmesh/proxy.h): listeners, the three connection handlers, the
// HBONE connection pool and the relays.
#include "zmesh/proxy.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <linux/netfilter_ipv6.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <nghttp2/nghttp2.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <algorithm>
#include <map>
#include <set>

#include "zmesh/address.h"
#include "zmesh/http2.h"
#include "hbone_head.h"

namespace zmesh {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using error_code = boost::system::error_code;
using system_error = boost::system::system_error;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string text(const tcp::endpoint& ep) { return to_string(ep); }

// An accepted socket's peer and local address (unmapped); nullopt when it is already gone.
std::optional<std::pair<tcp::endpoint, tcp::endpoint>> ends_of(const tcp::socket& socket) {
  error_code ec1, ec2;
  auto peer = socket.remote_endpoint(ec1), local = socket.local_endpoint(ec2);
  if (ec1 || ec2) return std::nullopt;
  return std::pair{unmapped(peer), unmapped(local)};
}

// A socket an application holds the other end of (a pod's, a plaintext client's) is armed to
// reset when it closes: if zmeshd dies mid-stream the kernel closes it with RST, and the
// application sees a failure, never a clean FIN on a truncated stream (close-delimited
// protocols would take that for the whole response). A relay that ends cleanly disarms it.
void reset_on_close(tcp::socket& socket) {
  error_code ignored;
  socket.set_option(asio::socket_base::linger(true, 0), ignored);
}
void close_gracefully(tcp::socket& socket) {
  error_code ignored;
  socket.set_option(asio::socket_base::linger(false, 0), ignored);
}

// Closes with RST, so the peer application learns the connection failed (not a clean end).
void abort_socket(tcp::socket& socket) {
  error_code ignored;
  reset_on_close(socket);
  socket.close(ignored);
}

// NB for every co_await in this module: no temporary with a destructor inside a co_await
// expression (GCC 12 may destroy it twice); name such values first.

// Runs op with a deadline. Asio's `||` ends when one side *succeeds*, so a failing op would
// otherwise wait out the timer: op's outcome is turned into a value first.
template <typename Op>
awaitable<void> with_deadline(Op op, std::chrono::milliseconds limit, std::string what) {
  auto outcome = [](Op o) -> awaitable<std::exception_ptr> {
    try {
      co_await std::move(o);
    } catch (...) {
      co_return std::current_exception();
    }
    co_return nullptr;
  };
  asio::steady_timer timer(co_await asio::this_coro::executor, limit);
  auto result = co_await (outcome(std::move(op)) || timer.async_wait(asio::use_awaitable));
  if (result.index() == 1) throw system_error(asio::error::timed_out, what);
  if (auto failure = std::get<0>(result)) std::rethrow_exception(failure);
}

// A connect from the node (zmeshd's mark, so no capture hook ever takes it).
// Every proxy socket sends at once (TCP_NODELAY): a relay writes what it was given, and Nagle
// would hold the tail of each write (a partial segment, an HTTP/2 frame) until the previous
// one is acknowledged, which with delayed ACKs can be 40 ms. Envoy and ztunnel do the same.
void no_delay(tcp::socket& socket) {
  error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
}

awaitable<tcp::socket> connect(const tcp::endpoint& target, uint32_t mark, std::chrono::milliseconds limit) {
  tcp::socket socket(co_await asio::this_coro::executor);
  socket.open(target.protocol());
  no_delay(socket);
  setsockopt(socket.native_handle(), SOL_SOCKET, SO_MARK, &mark, sizeof mark);
  const std::string what = "connect to " + text(target) + " timed out";
  co_await with_deadline(socket.async_connect(target, asio::use_awaitable), limit, what);
  co_return socket;
}

// A read of 0 means FIN or, when the other direction already consumed the socket's one-shot
// ECONNRESET, a reset. While our side has not sent its FIN, the state tells them apart:
// CLOSE_WAIT after a FIN, CLOSE after a reset. (After our FIN, CLOSE is the normal end.)
bool reset_by_peer(tcp::socket& socket, bool our_fin_sent) {
  if (our_fin_sent) return false;
  tcp_info info{};
  socklen_t len = sizeof info;
  return getsockopt(socket.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &len) == 0 && info.tcpi_state == TCP_CLOSE;
}

// Completes when `socket` has a pending error (a reset), however both relay directions are
// blocked elsewhere (on the stream's window, on the other socket). A hang-up without an error
// is a clean close, which the directions see themselves: the watch then waits to be cancelled.
awaitable<void> watch_for_reset(tcp::socket& socket) {
  for (;;) {
    auto [ec] = co_await socket.async_wait(tcp::socket::wait_error, use_tuple);
    // Closed under the relay (Proxy::reauthorize revoked it): end both sides with an error.
    if (ec && !socket.is_open()) throw system_error(asio::error::connection_aborted);
    if (ec) co_return;  // cancelled: the relay ended
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) throw system_error(error_code(err, boost::system::system_category()));
    asio::steady_timer forever(socket.get_executor(), asio::steady_timer::time_point::max());
    co_await forever.async_wait(use_tuple);
    co_return;
  }
}

// Runs `work` until it ends, or until `socket` shows an error, whichever comes first; the
// other is cancelled. (Asio's || would wait for a *successful* side, && for both.)
awaitable<void> until_reset(awaitable<void> work, tcp::socket& socket) {
  auto ex = co_await asio::this_coro::executor;
  auto [order, work_error, watch_error] =
      co_await asio::experimental::make_parallel_group(asio::co_spawn(ex, std::move(work), asio::deferred),
                                                       asio::co_spawn(ex, watch_for_reset(socket), asio::deferred))
          .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
  if (auto failure = order[0] == 0 ? work_error : watch_error) std::rethrow_exception(failure);
}

// Relay buffers, leased only while bytes are in flight: an idle connection holds none (64 KiB
// per direction held for a connection's life made an idle connection cost ~130 KiB). 256 KiB
// each: a bulk flow moves that much per read and write (same-node iperf3 9.5 -> 11.5 Gbit/s
// against 64 KiB), and only the pages a read touches become resident.
// One executor: no locking. Keeps a few free buffers for the next lease; the rest are mapped
// and unmapped on their own, not taken from the heap: a burst of thousands of leases (every
// held connection answering at once) would otherwise leave the heap fragmented at its peak
// size, and RSS would climb with each burst (the soak test saw +8 MiB over 20,000 connections).
class BufferPool {
 public:
  static constexpr size_t kSize = 256 << 10;
  struct Unmap {
    void operator()(uint8_t* p) const { munmap(p, kSize); }
  };
  using Buffer = std::unique_ptr<uint8_t[], Unmap>;
  class Lease {
   public:
    Lease(BufferPool& pool) : pool_(pool), buffer_(pool.take()) {}
    ~Lease() { pool_.give(std::move(buffer_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    asio::mutable_buffer buffer() { return asio::buffer(buffer_.get(), kSize); }
    uint8_t* data() { return buffer_.get(); }

   private:
    BufferPool& pool_;
    Buffer buffer_;
  };

 private:
  static constexpr size_t kKeep = 8;
  Buffer take() {
    if (free_.empty()) {
      void* p = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      return Buffer(static_cast<uint8_t*>(p));
    }
    Buffer b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  void give(Buffer b) {
    if (free_.size() < kKeep) free_.push_back(std::move(b));
  }
  std::vector<Buffer> free_;
};

BufferPool& buffers() {
  thread_local BufferPool pool;  // the proxy runs on one thread; thread_local keeps that honest
  return pool;
}

// Bytes one way until EOF (then half-close the other side); throws on an error.
// `fin_sent` records, per socket, whether our FIN went out on it.
struct FinSent {
  bool a = false, b = false;
};

awaitable<void> pipe(tcp::socket& from, tcp::socket& to, uint64_t& count, const bool& from_fin_sent, bool& to_fin_sent) {
  for (;;) {
    auto [wait_ec] = co_await from.async_wait(tcp::socket::wait_read, use_tuple);
    if (wait_ec) throw system_error(wait_ec);
    BufferPool::Lease lease(buffers());
    auto [ec, n] = co_await from.async_read_some(lease.buffer(), use_tuple);
    if (ec == asio::error::eof && reset_by_peer(from, from_fin_sent)) ec = asio::error::connection_reset;
    if (ec == asio::error::eof) {
      error_code ignored;
      to_fin_sent = true;
      to.shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
    if (ec) throw system_error(ec);
    auto [wec, written] = co_await asio::async_write(to, asio::buffer(lease.data(), n), use_tuple);
    if (wec) throw system_error(wec);
    count += n;
  }
}

// What ended a relay. `&&` throws multiple_exceptions when both directions failed: the first
// one is the cause.
std::string failure_text(const std::exception& e) {
  if (const auto* both = dynamic_cast<const asio::multiple_exceptions*>(&e)) {
    try {
      std::rethrow_exception(both->first_exception());
    } catch (const system_error& first) {
      return first.code().message();
    } catch (const std::exception& first) {
      return first.what();
    }
  }
  if (const auto* system = dynamic_cast<const system_error*>(&e)) return system->code().message();
  return e.what();
}

struct RelayResult {
  uint64_t sent = 0;      // from the local socket to the other side
  uint64_t received = 0;  // to the local socket
  std::string error;      // empty when both directions ended cleanly
};

awaitable<RelayResult> relay(tcp::socket& a, tcp::socket& b) {
  RelayResult result;
  try {
    FinSent fin;
    co_await until_reset(
        until_reset(pipe(a, b, result.sent, fin.a, fin.b) && pipe(b, a, result.received, fin.b, fin.a), a), b);
    close_gracefully(a);
    close_gracefully(b);
  } catch (const std::exception& e) {
    result.error = failure_text(e);
    abort_socket(a);
    abort_socket(b);
  }
  co_return result;
}

// TCP socket <-> HBONE stream, both directions; half-close and resets carried across.
awaitable<RelayResult> relay(tcp::socket& socket, const std::shared_ptr<http2::Stream>& stream) {
  RelayResult result;
  bool fin_sent = false;  // on `socket`
  auto to_stream = [&]() -> awaitable<void> {
    for (;;) {
      auto [wait_ec] = co_await socket.async_wait(tcp::socket::wait_read, use_tuple);
      if (wait_ec) throw system_error(wait_ec);
      BufferPool::Lease lease(buffers());
      auto [ec, n] = co_await socket.async_read_some(lease.buffer(), use_tuple);
      if (ec == asio::error::eof && reset_by_peer(socket, fin_sent)) ec = asio::error::connection_reset;
      if (ec == asio::error::eof) {
        stream->close_write();
        co_return;
      }
      if (ec) throw system_error(ec);
      if (auto werr = co_await stream->write(asio::buffer(lease.data(), n))) throw system_error(werr);
      result.sent += n;
    }
  };
  auto to_socket = [&]() -> awaitable<void> {
    for (;;) {
      auto [ec, chunk] = co_await stream->take_some();
      if (ec) throw system_error(ec);
      if (chunk.empty()) {
        error_code ignored;
        fin_sent = true;
        socket.shutdown(tcp::socket::shutdown_send, ignored);
        co_return;
      }
      auto [wec, written] = co_await asio::async_write(socket, asio::buffer(chunk), use_tuple);
      stream->consumed(chunk.size());  // also when the write failed: the window must come back
      if (wec) throw system_error(wec);
      result.received += chunk.size();
    }
  };
  try {
    co_await until_reset(to_stream() && to_socket(), socket);
    close_gracefully(socket);
  } catch (const std::exception& e) {
    result.error = failure_text(e);
    // RFC 9113 8.5: a TCP error on a CONNECT tunnel is CONNECT_ERROR; the peer resets its side.
    stream->reset(NGHTTP2_CONNECT_ERROR);
    abort_socket(socket);
  }
  co_return result;
}

tcp::acceptor listen(asio::io_context& io, const tcp::endpoint& at, bool transparent) {
  tcp::acceptor acceptor(io);
  auto fail = [&](const error_code& ec, const char* step) {
    throw system_error(ec, std::string(step) + " " + text(at) +
                               (ec == asio::error::address_in_use ? " (is another zmeshd running here?)" : ""));
  };
  error_code ec;
  acceptor.open(at.protocol(), ec);
  if (ec) fail(ec, "open listener");
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  if (at.protocol() == tcp::v6()) acceptor.set_option(asio::ip::v6_only(false));
  if (transparent) {
    int on = 1;
    // Accept connections for the pods' addresses, which the tc program assigned to us.
    if (setsockopt(acceptor.native_handle(), SOL_IP, IP_TRANSPARENT, &on, sizeof on) != 0 ||
        setsockopt(acceptor.native_handle(), SOL_IPV6, IPV6_TRANSPARENT, &on, sizeof on) != 0)
      fail(error_code(errno, boost::system::system_category()), "set IP_TRANSPARENT on");
  }
  acceptor.bind(at, ec);
  if (ec) fail(ec, "bind");
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail(ec, "listen on");
  return acceptor;
}

// After a failed handshake: why the peer's certificate was rejected, if it was (", client
// certificate: certificate has expired"); empty otherwise.
std::string verification_failure(SSL* ssl) {
  if (SSL_get_verify_result(ssl) == X509_V_OK) return {};
  const auto peer = verified_peer_identity(ssl);
  const auto* why = std::get_if<std::string>(&peer);
  return why ? " (peer certificate: " + *why + ")" : std::string();
}

// A service's name in Istio's labels: its hostname, else name.namespace.
std::string service_hostname(const Service& service) {
  return service.config.hostname.empty() ? service.config.name + "." + service.config.namespace_
                                         : service.config.hostname;
}

// Why a TLS handshake failed, for zmesh_tls_handshake_failures_total{reason}.
const char* failure_reason(const error_code& ec, SSL* ssl) {
  if (ec == asio::error::timed_out) return "timeout";
  if (SSL_get_verify_result(ssl) != X509_V_OK) return "certificate";
  if (ec.category() == asio::error::get_ssl_category() &&
      ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
    return "certificate";  // a client without one
  return "protocol";
}

// RFC 7239: `for="10.244.1.2"`, `for="[fd00::2]"`.
std::string forwarded_header(const std::string& source_ip) {
  const bool v6 = source_ip.find(':') != std::string::npos;
  return "for=\"" + (v6 ? "[" + source_ip + "]" : source_ip) + "\"";
}

// Wakes every waiter at once (a Signal wakes one).
class Latch {
 public:
  explicit Latch(const asio::any_io_executor& ex) : timer_(ex, asio::steady_timer::time_point::max()) {}
  awaitable<void> wait() {
    if (!open_) co_await timer_.async_wait(use_tuple);
  }
  void open() {
    open_ = true;
    timer_.cancel();
  }

 private:
  asio::steady_timer timer_;
  bool open_ = false;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

struct Proxy::Impl : std::enable_shared_from_this<Proxy::Impl> {
  struct PoolKey {
    SpiffeId source, destination;
    std::string node;
    auto operator<=>(const PoolKey&) const = default;
  };
  struct Pending {
    explicit Pending(const asio::any_io_executor& ex) : done(ex) {}
    Latch done;
  };

  asio::io_context& io;
  Datapath& datapath;
  const MeshState& state;
  Certificates& certs;
  Telemetry& telemetry;
  ProxyOptions options;
  std::vector<tcp::acceptor> outbound, hbone, plain;
  ProxyStats stats;
  uint64_t next_id = 1;
  std::map<PoolKey, std::vector<std::shared_ptr<http2::Connection>>> pool;
  std::map<PoolKey, std::shared_ptr<Pending>> connecting;
  std::set<std::shared_ptr<http2::Connection>> served;  // HBONE connections other nodes opened
  bool draining = false;
  std::unique_ptr<Latch> idle;  // opened when the last active connection ends while draining

  Impl(ProxyInputs& in)
      : io(in.io),
        datapath(in.datapath),
        state(in.state),
        certs(in.certificates),
        telemetry(in.telemetry),
        options(in.options) {}

  void handshake_failed(const char* reason) {
    ++stats.handshake_failures;
    ++stats.handshake_failures_by_reason[reason];
  }

  // A connection this node authorized (it is the destination's node), kept while it is
  // relayed so that a policy change can take it back: closing `upstream` (the socket to the
  // local pod) ends the relay with a reset on both sides.
  struct Grant {
    std::optional<SpiffeId> source;
    asio::ip::address source_ip, destination;
    uint16_t port;
    tcp::socket* upstream;
    std::string tag;
  };
  std::map<uint64_t, Grant> grants;
  class GrantScope {
   public:
    GrantScope(Impl& impl, uint64_t id, Grant grant) : impl_(impl), id_(id) { impl_.grants.emplace(id, std::move(grant)); }
    ~GrantScope() { impl_.grants.erase(id_); }
    GrantScope(const GrantScope&) = delete;
    GrantScope& operator=(const GrantScope&) = delete;

   private:
    Impl& impl_;
    uint64_t id_;
  };
  uint64_t next_grant = 1;

  // Why `snap` would not let this connection through any more; nullopt when it would.
  static std::optional<std::string> why_denied(const MeshSnapshot& snap, const std::optional<SpiffeId>& source,
                                               const asio::ip::address& source_ip,
                                               const asio::ip::address& destination, uint16_t port) {
    const Workload* w = snap.mesh.by_ip(destination);
    if (!w || !w->local) return "the destination is no longer a workload of this node";
    if (!source && w->config.mtls_strict) return "the workload now requires mTLS";
    if (const auto d = snap.authorizer.decide({source, source_ip, w, port}); !d.allowed) return d.reason;
    return std::nullopt;
  }

  // After a wait (the connect to the pod), a change may have landed since `decided_with` was
  // taken: decide again with what is in force now, before the grant is registered.
  std::optional<std::string> denied_since(const MeshSnapshot& decided_with, const std::optional<SpiffeId>& source,
                                          const asio::ip::address& source_ip, const tcp::endpoint& target) {
    const auto now = state.current();
    if (now->generation == decided_with.generation) return std::nullopt;
    return why_denied(*now, source, source_ip, target.address(), target.port());
  }

  size_t reauthorize() {
    const auto snap = state.current();
    std::vector<tcp::socket*> revoke;
    for (const auto& [id, g] : grants) {
      const auto why = why_denied(*snap, g.source, g.source_ip, g.destination, g.port);
      if (!why) continue;
      spdlog::warn("{} closed: {} (config generation {})", g.tag, *why, snap->generation);
      revoke.push_back(g.upstream);
    }
    for (auto* socket : revoke) abort_socket(*socket);
    stats.revoked += revoke.size();
    return revoke.size();
  }

  // Counts a connection as active for its lifetime (drain waits for these).
  struct Active {
    Impl& impl;
    explicit Active(Impl& i) : impl(i) { ++impl.stats.active; }
    ~Active() {
      if (--impl.stats.active == 0 && impl.idle) impl.idle->open();
    }
  };

  awaitable<void> accept_loop(tcp::acceptor& acceptor, awaitable<void> (Impl::*handler)(tcp::socket, uint64_t)) {
    auto self = shared_from_this();
    auto backoff = std::chrono::milliseconds(10);
    asio::steady_timer timer(io);
    while (acceptor.is_open()) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) break;
      if (ec) {
        // EMFILE and friends: back off instead of spinning on the same error.
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
          io,
          [self, handler, id, s = std::move(socket)]() mutable -> awaitable<void> {
            Active active(*self);
            try {
              co_await ((*self).*handler)(std::move(s), id);
            } catch (const std::exception& e) {
              spdlog::warn("[c{}] {}", id, e.what());
            }
          },
          asio::detached);
    }
  }

  // --- outbound -------------------------------------------------------------------------------

  // A destination to try: a workload and the address to reach it at (and the service it was
  // reached through, if any).
  struct Candidate {
    const Workload* workload;
    tcp::endpoint target;
    const Service* service = nullptr;
  };
  static constexpr auto kFailurePenalty = std::chrono::seconds(10);  // a failed endpoint goes last this long
  std::map<asio::ip::address, std::chrono::steady_clock::time_point> failed_until;
  std::map<std::string, size_t> round_robin;  // per service: where the next connection starts

  // Round-robin over the service's endpoints, those that failed recently last (still tried when
  // nothing else is left). Round-robin rather than least-connections: each node sees only its
  // own connections, so per-node counts would not balance the service anyway, and with
  // pooled HBONE a new stream costs the same on every endpoint.
  std::vector<Candidate> endpoints_of(const Service& service, uint16_t target_port) {
    std::vector<Candidate> out;
    const size_t n = service.endpoints.size();
    const size_t first = round_robin[service.config.namespace_ + "/" + service.config.name]++ % n;
    for (size_t i = 0; i < n; ++i) {
      const Workload* w = service.endpoints[(first + i) % n];
      if (!w->config.ips.empty()) out.push_back({w, tcp::endpoint(w->config.ips.front(), target_port), &service});
    }
    const auto now = std::chrono::steady_clock::now();
    std::stable_partition(out.begin(), out.end(), [&](const Candidate& c) {
      auto it = failed_until.find(c.target.address());
      return it == failed_until.end() || it->second <= now;
    });
    return out;
  }

  bool in_pod_cidr(const asio::ip::address& ip) const {
    const auto address = unmapped(ip);
    return std::any_of(options.pod_cidrs.begin(), options.pod_cidrs.end(),
                       [&](const IpBlock& b) { return b.contains(address); });
  }

  // Istio's labels for a connection from `src` (with identity `principal`, if any) to `dst`.
  static ConnectionLabels labels(const char* reporter, const Workload* src, const std::optional<SpiffeId>& principal,
                                 const Workload& dst, const Service* service, const Mesh& mesh, uint16_t port,
                                 const char* security) {
    ConnectionLabels l;
    l.reporter = reporter;
    if (src) {
      l.source_workload = src->config.name;
      l.source_workload_namespace = src->config.namespace_;
    } else if (principal) {
      l.source_workload_namespace = principal->namespace_;
    }
    if (principal) l.source_principal = principal->uri();
    l.destination_workload = dst.config.name;
    l.destination_workload_namespace = dst.config.namespace_;
    if (!dst.identity.namespace_.empty()) l.destination_principal = dst.identity.uri();
    if (!service) service = mesh.service_for(dst, port);
    if (service) l.destination_service = service_hostname(*service);
    l.connection_security_policy = security;
    return l;
  }

  enum class Delivery { Done, TryNext };

  // Carries `client` to one candidate. TryNext when it could not reach it before any byte
  // moved (the next endpoint may serve it); Done otherwise (relayed, or refused for good).
  // `record` gets the labels and, when Done, the outcome. `src` is null for a connect of the
  // node itself: it has no identity, so it never rides HBONE, and a pod of this node decides
  // it as plaintext (a STRICT pod refuses it).
  awaitable<Delivery> deliver(const MeshSnapshot& snap, tcp::socket& client, uint64_t id, const tcp::endpoint& peer,
                              const Workload* src, const Candidate& to, ConnectionRecord& record) {
    const Workload& dst = *to.workload;
    const std::optional<SpiffeId> identity = src ? std::optional(src->identity) : std::nullopt;
    const std::string source_name = identity ? identity->uri() : std::string("the node itself");
    const bool over_hbone = src && dst.config.protocol != "TCP" && !dst.local;
    record.destination = to.target;
    record.labels = labels("source", src, identity, dst, to.service, snap.mesh, to.target.port(),
                           over_hbone ? "mutual_tls" : "none");
    bool same_node = false;
    auto refused = [&](const char* flags) {
      record.labels.response_flags = flags;
      telemetry.failed(record);
      if (same_node) {  // this node is the destination's too: it reports as that side as well
        ConnectionRecord inbound = record;
        inbound.direction = "inbound";
        inbound.labels.reporter = "destination";
        telemetry.failed(inbound);
      }
      abort_socket(client);
      return Delivery::Done;
    };
    RelayResult result;
    if (!over_hbone) {
      if (dst.local) {
        // This node is the destination's node: it authorizes, as the far side of HBONE would.
        same_node = true;
        if (auto why = why_denied(snap, identity, peer.address(), to.target.address(), to.target.port())) {
          ++stats.refused;
          ++stats.denied;
          spdlog::warn("[c{}] {} ({}) -> {} (same node): {}", id, text(peer), source_name, text(to.target), *why);
          record.error = *why;
          co_return refused("DENY");
        }
      }
      // Same node, or a workload outside the mesh (a service endpoint; plain TCP as the app asked).
      tcp::socket upstream(io);
      try {
        upstream = co_await connect(to.target, options.proxy_mark, options.connect_timeout);
        reset_on_close(upstream);
      } catch (const system_error& e) {
        spdlog::warn("[c{}] {} -> {} ({}): {}", id, text(peer), text(to.target),
                     same_node ? "same node" : "plain TCP workload", e.what());
        record.error = e.code().message();
        co_return Delivery::TryNext;
      }
      if (same_node) {
        if (auto why = denied_since(snap, identity, peer.address(), to.target)) {
          ++stats.refused;
          ++stats.denied;
          spdlog::warn("[c{}] {} -> {} (same node): {}", id, text(peer), text(to.target), *why);
          record.error = *why;
          co_return refused("DENY");
        }
      }
      telemetry.opened(record.labels);
      if (same_node) {
        ConnectionLabels inbound = record.labels;
        inbound.reporter = "destination";
        telemetry.opened(inbound);
      }
      std::optional<GrantScope> grant;  // same node: this node authorized it, and may take it back
      if (same_node)
        grant.emplace(*this, next_grant++,
                      Grant{identity, peer.address(), to.target.address(), to.target.port(), &upstream,
                            "[c" + std::to_string(id) + "] " + text(peer) + " -> " + text(to.target) + " (same node)"});
      result = co_await relay(client, upstream);
    } else {
      std::shared_ptr<http2::Stream> stream;
      const PoolKey key{*identity, dst.identity, dst.config.node};
      const tcp::endpoint hbone_target(to.target.address(), options.inbound_hbone_port);
      const std::string authority = text(to.target);
      try {
        stream = co_await open_stream(key, hbone_target, authority, peer.address().to_string());
      } catch (const std::exception& e) {
        spdlog::warn("[c{}] {} -> {}: HBONE to node {} failed: {}", id, text(peer), text(to.target), dst.config.node,
                     e.what());
        record.error = e.what();
        co_return Delivery::TryNext;
      }
      if (stream->status() != 200) {
        spdlog::warn("[c{}] {} -> {}: node {} answered {}", id, text(peer), text(to.target), dst.config.node,
                     stream->status());
        record.error = "node " + dst.config.node + " answered " + std::to_string(stream->status());
        if (stream->status() == 503) co_return Delivery::TryNext;
        co_return refused(stream->status() == 401 ? "DENY" : "CONNECT");
      }
      telemetry.opened(record.labels);
      result = co_await relay(client, stream);
    }
    spdlog::info("[c{}] outbound {} ({}) -> {} ({}): sent {} received {}{}{}", id, text(peer), source_name,
                 text(to.target), dst.identity.uri(), result.sent, result.received,
                 result.error.empty() ? "" : ", error: ", result.error);
    record.request_bytes = result.sent;
    record.response_bytes = result.received;
    record.error = result.error;
    telemetry.closed(record);
    if (same_node) {
      ConnectionRecord inbound = record;
      inbound.direction = "inbound";
      inbound.labels.reporter = "destination";
      telemetry.closed(inbound);
    }
    co_return Delivery::Done;
  }

  awaitable<void> outbound_connection(tcp::socket client, uint64_t id) {
    ++stats.outbound_accepted;
    reset_on_close(client);
    const auto ends = ends_of(client);
    if (!ends) co_return;  // reset before we got to it: nothing to carry
    const auto& [peer, local] = *ends;
    const auto orig = datapath.original_destination(peer, local);
    ConnectionRecord record;
    record.id = id;
    record.direction = "outbound";
    record.source = peer;
    record.destination = local;
    record.labels.reporter = "source";
    auto refuse = [&](const std::string& why) {
      ++stats.refused;
      spdlog::warn("[c{}] outbound {} -> {}: {}", id, text(peer), orig ? text(orig->target) : std::string("?"), why);
      abort_socket(client);
      record.error = why;
      if (record.labels.response_flags == "-") record.labels.response_flags = "CONNECT";
      telemetry.failed(record);
    };
    if (!orig) co_return refuse("no original destination recorded (a connect zmesh did not capture?)");
    record.destination = orig->target;
    const auto snap = state.current();
    const Mesh& mesh = snap->mesh;
    // A pod's connect carries the pod's identity; one of the node's own processes carries none
    // (its address is one of the node's: a reply to any other would not come back to it).
    const Workload* src = orig->from_node ? nullptr : mesh.by_ip(peer.address());
    if (!orig->from_node) {
      if (!src || !src->local) co_return refuse("the source is not a workload of this node");
      record.labels.source_workload = src->config.name;
      record.labels.source_workload_namespace = src->config.namespace_;
      record.labels.source_principal = src->identity.uri();
    }

    std::vector<Candidate> candidates;
    Workload unknown_pod;  // a pod of another node's CNI, inside a pod CIDR: lives in this frame
    const tcp::endpoint target = orig->target;
    if (const Workload* dst = mesh.by_ip(target.address())) {
      candidates.push_back({dst, target});
    } else if (const Service* service = mesh.service_by_vip(target.address())) {
      const std::string name = service->config.namespace_ + "/" + service->config.name;
      record.labels.destination_service = service_hostname(*service);
      const auto port = service->config.ports.find(target.port());
      if (port == service->config.ports.end())
        co_return refuse("service " + name + " has no port " + std::to_string(target.port()));
      if (service->endpoints.empty()) co_return refuse("service " + name + " has no endpoints");
      candidates = endpoints_of(*service, port->second);
    } else if (in_pod_cidr(target.address())) {
      unknown_pod.config.name = "unknown";
      unknown_pod.config.namespace_ = "unknown";
      unknown_pod.config.node = "pod " + unmapped(target.address()).to_string();  // its own pool entry
      unknown_pod.identity = SpiffeId{mesh.trust_domain(), "", ""};
      candidates.push_back({&unknown_pod, target});
    } else {
      co_return refuse("unknown destination, refused");
    }
    for (const auto& candidate : candidates) {
      if (co_await deliver(*snap, client, id, peer, src, candidate, record) == Delivery::Done) co_return;
      failed_until[candidate.target.address()] = std::chrono::steady_clock::now() + kFailurePenalty;
    }
    refuse(candidates.size() > 1 ? "every endpoint failed" : "the destination cannot be reached");
  }

  // `source_ip` goes along in a `forwarded: for=` header: the destination's policies match
  // source addresses, and it sees only this node's address.
  awaitable<std::shared_ptr<http2::Stream>> open_stream(const PoolKey& key, const tcp::endpoint& target,
                                                       const std::string& authority, const std::string& source_ip) {
    for (;;) {
      auto& conns = pool[key];
      std::erase_if(conns, [](const auto& c) { return !c->usable() && c->active_streams() == 0; });
      std::shared_ptr<http2::Connection> best;
      for (const auto& c : conns)
        if (c->usable() && (!best || c->active_streams() < best->active_streams())) best = c;
      if (best) {
        ++stats.streams_opened;
        const http2::Connection::Headers headers{{"forwarded", forwarded_header(source_ip)}};
        std::shared_ptr<http2::Stream> stream;
        auto open = [&]() -> awaitable<void> { stream = co_await best->open(authority, headers); };
        const std::string what = "no HBONE response from node " + key.node + " in time";
        try {
          co_await with_deadline(open(), options.handshake_timeout, what);
        } catch (const system_error& e) {
          // A peer that stopped answering (gone without a reset): new streams go elsewhere.
          if (e.code() == asio::error::timed_out) best->close();
          throw;
        }
        co_return stream;
      }
      if (auto it = connecting.find(key); it != connecting.end()) {
        auto pending = it->second;  // another coroutine is connecting for this key: share it
        co_await pending->done.wait();
        continue;
      }
      auto pending = std::make_shared<Pending>(io.get_executor());
      connecting[key] = pending;
      try {
        auto connection = co_await connect_hbone(key, target);
        pool[key].push_back(connection);
      } catch (...) {
        connecting.erase(key);
        pending->done.open();
        throw;
      }
      connecting.erase(key);
      pending->done.open();
    }
  }

  awaitable<std::shared_ptr<http2::Connection>> connect_hbone(const PoolKey& key, const tcp::endpoint& target) {
    auto socket = co_await connect(target, options.proxy_mark, options.connect_timeout);
    const uint64_t material = certs.rotations();
    http2::TlsStream tls(std::move(socket), *certs.client_context(key.source));
    const std::string what = "TLS handshake with " + text(target) + " timed out";
    try {
      co_await with_deadline(tls.handshake(asio::ssl::stream_base::client),
                             options.handshake_timeout, what);
    } catch (const system_error& e) {
      handshake_failed(failure_reason(e.code(), tls.native_handle()));
      throw system_error(e.code(), "TLS handshake with " + text(target) + ": " + e.code().message() +
                                       verification_failure(tls.native_handle()));
    }
    const auto peer = verified_peer_identity(tls.native_handle());
    if (const auto* why = std::get_if<std::string>(&peer)) {
      handshake_failed("certificate");
      throw IdentityError("server " + text(target) + " rejected: " + *why);
    }
    // An unknown pod inside a pod CIDR (key.destination has no namespace): any identity of
    // this trust domain; else exactly the workload's.
    const bool unknown = key.destination.namespace_.empty();
    if (unknown ? std::get<SpiffeId>(peer).trust_domain != key.destination.trust_domain
                : std::get<SpiffeId>(peer) != key.destination) {
      handshake_failed("identity");
      throw IdentityError("server " + text(target) + " is " + std::get<SpiffeId>(peer).uri() + ", expected " +
                          key.destination.uri());
    }
    ++stats.client_handshakes;
    auto connection = http2::Connection::make(std::move(tls), http2::Connection::Role::Client);
    connection->keep_alive(options.hbone_keepalive);
    connection->start();
    // A CA rotation while this handshake ran: it used the old material, and
    // retire_connections() could not see it. It takes no stream; the pool makes a new one.
    if (certs.rotations() != material) connection->drain();
    spdlog::info("hbone: connected to {} as {} (server {}, node {})", text(target), key.source.uri(),
                 key.destination.uri(), key.node);
    co_return connection;
  }

  awaitable<void> reap_idle_pool() {
    auto self = shared_from_this();
    asio::steady_timer timer(io);
    while (!draining) {
      timer.expires_after(std::min(options.pool_idle_timeout / 2, std::chrono::milliseconds(1000)));
      co_await timer.async_wait(use_tuple);
      const auto now = std::chrono::steady_clock::now();
      std::erase_if(pool, [&](const auto& entry) { return entry.second.empty() && !connecting.contains(entry.first); });
      for (auto& [key, conns] : pool) {
        std::erase_if(conns, [&](const std::shared_ptr<http2::Connection>& c) {
          if (c->active_streams() == 0 && now - c->idle_since() >= options.pool_idle_timeout) {
            spdlog::info("hbone: closing idle connection to node {} ({} -> {})", key.node, key.source.uri(),
                         key.destination.uri());
            c->drain();
            return true;
          }
          return !c->usable() && c->active_streams() == 0;
        });
      }
    }
  }

  // --- inbound HBONE --------------------------------------------------------------------------

  awaitable<void> hbone_connection(tcp::socket socket, uint64_t id) {
    ++stats.inbound_hbone_accepted;
    const auto ends = ends_of(socket);
    if (!ends) co_return;  // reset before we got to it: nothing to carry
    const auto& [peer, local] = *ends;
    const auto snap = state.current();
    const Workload* target = snap->mesh.by_ip(local.address());
    if (!target || !target->local) {
      ++stats.refused;
      spdlog::warn("[c{}] HBONE from {} to {}: not a workload of this node, refused", id, text(peer), text(local));
      abort_socket(socket);
      co_return;
    }
    const uint64_t material = certs.rotations();
    http2::TlsStream tls(std::move(socket), *certs.server_context(target->identity));
    const std::string what = "handshake timed out";
    try {
      co_await with_deadline(tls.handshake(asio::ssl::stream_base::server),
                             options.handshake_timeout, what);
    } catch (const system_error& e) {
      handshake_failed(failure_reason(e.code(), tls.native_handle()));
      spdlog::warn("[c{}] HBONE from {}: TLS handshake failed: {}{}", id, text(peer), e.code().message(),
                   verification_failure(tls.native_handle()));
      co_return;
    }
    const auto client = verified_peer_identity(tls.native_handle());
    if (const auto* why = std::get_if<std::string>(&client)) {
      handshake_failed("certificate");
      spdlog::warn("[c{}] HBONE from {} refused: client certificate: {}", id, text(peer), *why);
      co_return;
    }
    ++stats.server_handshakes;
    const SpiffeId client_id = std::get<SpiffeId>(client), server_id = target->identity;
    std::weak_ptr<Impl> weak = weak_from_this();
    auto connection = http2::Connection::make(
        std::move(tls), http2::Connection::Role::Server,
        [weak, id, peer, client_id, server_id](std::shared_ptr<http2::Stream> stream) {
          if (auto impl = weak.lock())
            asio::co_spawn(impl->io, impl->hbone_request(std::move(stream), id, peer, client_id, server_id),
                           asio::detached);
        });
    served.insert(connection);
    connection->keep_alive(options.hbone_keepalive);
    connection->start([weak, connection]() mutable {
      if (auto impl = weak.lock()) impl->served.erase(connection);
      connection.reset();
    });
    if (certs.rotations() != material) connection->drain();  // as in connect_hbone
  }

  awaitable<void> hbone_request(std::shared_ptr<http2::Stream> stream, uint64_t conn_id, tcp::endpoint peer,
                                SpiffeId client, SpiffeId server) {
    auto self = shared_from_this();
    Active active(*this);
    const std::string tag = "[c" + std::to_string(conn_id) + "/s" + std::to_string(stream->id()) + "]";
    ConnectionRecord record;
    record.id = conn_id;
    record.direction = "inbound";
    record.source = peer;
    record.labels.reporter = "destination";
    record.labels.source_principal = client.uri();
    record.labels.source_workload_namespace = client.namespace_;
    record.labels.destination_principal = server.uri();
    record.labels.connection_security_policy = "mutual_tls";
    auto refuse = [&](int status, const std::string& why) {
      ++stats.refused;
      spdlog::warn("{} HBONE {} from {} ({}) -> {}: {}", tag, status, text(peer), client.uri(), stream->authority(),
                   why);
      stream->respond(status, false);
      record.error = why;
      record.labels.response_flags = status == 401 ? "DENY" : "CONNECT";
      telemetry.failed(record);
    };
    if (stream->method() != "CONNECT") co_return refuse(400, "method " + stream->method() + " is not CONNECT");
    const auto target = hbone::parse_authority(stream->authority());
    if (!target) co_return refuse(400, "malformed :authority (want ip:port)");
    const auto snap = state.current();
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
    record.labels = labels("destination", source && source->identity == client ? source : nullptr, client, *workload,
                           nullptr, snap->mesh, target->port(), "mutual_tls");
    const auto decision = snap->authorizer.decide({client, source_ip, workload, target->port()});
    if (!decision.allowed) {
      ++stats.denied;
      co_return refuse(401, decision.reason);
    }
    tcp::socket upstream(io);
    try {
      upstream = co_await connect(unmapped(*target), options.proxy_mark, options.connect_timeout);
      reset_on_close(upstream);
    } catch (const system_error& e) {
      co_return refuse(503, e.code() == asio::error::timed_out ? std::string(e.what()) : e.code().message());
    }
    if (auto why = denied_since(*snap, client, source_ip, *target)) {
      ++stats.denied;
      co_return refuse(401, *why);
    }
    stream->respond(200, true);
    GrantScope grant(*this, next_grant++,
                     {client, source_ip, target->address(), target->port(), &upstream,
                      tag + " " + text(peer) + " (" + client.uri() + ") -> " + text(*target)});
    telemetry.opened(record.labels);
    const auto result = co_await relay(upstream, stream);
    spdlog::info("{} inbound {} ({}) -> {} ({}): sent {} received {}{}{}", tag, text(peer), client.uri(),
                 text(*target), server.uri(), result.received, result.sent, result.error.empty() ? "" : ", error: ",
                 result.error);
    record.request_bytes = result.received;  // into the pod
    record.response_bytes = result.sent;     // out of it
    record.error = result.error;
    telemetry.closed(record);
  }

  // --- inbound plaintext ----------------------------------------------------------------------

  awaitable<void> plain_connection(tcp::socket client, uint64_t id) {
    ++stats.inbound_plain_accepted;
    reset_on_close(client);
    const auto ends = ends_of(client);
    if (!ends) co_return;  // reset before we got to it: nothing to carry
    const auto& [peer, local] = *ends;
    const auto snap = state.current();
    const Workload* target = snap->mesh.by_ip(local.address());
    ConnectionRecord record;
    record.id = id;
    record.direction = "inbound";
    record.source = peer;
    record.destination = local;
    record.labels.reporter = "destination";
    auto refuse = [&](const std::string& why, const char* flags) {
      ++stats.refused;
      spdlog::warn("[c{}] plaintext {} -> {} refused: {}", id, text(peer), text(local), why);
      abort_socket(client);
      record.error = why;
      record.labels.response_flags = flags;
      telemetry.failed(record);
    };
    if (!target || !target->local) co_return refuse("not a workload of this node", "CONNECT");
    record.labels = labels("destination", snap->mesh.by_ip(peer.address()), std::nullopt, *target, nullptr,
                           snap->mesh, local.port(), "none");
    if (target->config.mtls_strict) co_return refuse("the workload requires mTLS", "DENY");
    const auto decision = snap->authorizer.decide({std::nullopt, peer.address(), target, local.port()});
    if (!decision.allowed) {
      ++stats.denied;
      co_return refuse(decision.reason, "DENY");
    }
    tcp::socket upstream(io);
    try {
      upstream = co_await connect(local, options.proxy_mark, options.connect_timeout);
      reset_on_close(upstream);
    } catch (const system_error& e) {
      co_return refuse(e.what(), "CONNECT");
    }
    if (auto why = denied_since(*snap, std::nullopt, peer.address(), local)) {
      ++stats.denied;
      co_return refuse(*why, "DENY");
    }
    telemetry.opened(record.labels);
    GrantScope grant(*this, next_grant++,
                     {std::nullopt, peer.address(), local.address(), local.port(), &upstream,
                      "[c" + std::to_string(id) + "] plaintext " + text(peer) + " -> " + text(local)});
    const auto result = co_await relay(client, upstream);
    spdlog::info("[c{}] plaintext {} -> {} ({}): sent {} received {}{}{}", id, text(peer), text(local),
                 target->identity.uri(), result.sent, result.received, result.error.empty() ? "" : ", error: ",
                 result.error);
    record.request_bytes = result.sent;
    record.response_bytes = result.received;
    record.error = result.error;
    telemetry.closed(record);
  }
};

Proxy::Proxy(ProxyInputs inputs) : impl_(std::make_shared<Impl>(inputs)) {
  auto& o = impl_->options;
  for (const auto& ip : o.outbound_addresses)
    impl_->outbound.push_back(listen(impl_->io, {ip, o.outbound_port}, false));
  impl_->hbone.push_back(listen(impl_->io, {asio::ip::address_v6::any(), o.inbound_hbone_port}, true));
  impl_->plain.push_back(listen(impl_->io, {asio::ip::address_v6::any(), o.inbound_plain_port}, true));
}

Proxy::~Proxy() = default;

void Proxy::start() {
  auto& impl = *impl_;
  for (auto& a : impl.outbound)
    asio::co_spawn(impl.io, impl.accept_loop(a, &Impl::outbound_connection), asio::detached);
  for (auto& a : impl.hbone) asio::co_spawn(impl.io, impl.accept_loop(a, &Impl::hbone_connection), asio::detached);
  for (auto& a : impl.plain) asio::co_spawn(impl.io, impl.accept_loop(a, &Impl::plain_connection), asio::detached);
  asio::co_spawn(impl.io, impl.reap_idle_pool(), asio::detached);
}

void Proxy::drain(std::chrono::milliseconds deadline, std::function<void()> done) {
  auto impl = impl_;
  impl->draining = true;
  error_code ignored;
  for (auto* list : {&impl->outbound, &impl->hbone, &impl->plain})
    for (auto& a : *list) a.close(ignored);
  for (auto& connection : impl->served) connection->drain();
  for (auto& [key, conns] : impl->pool)
    for (auto& c : conns) c->drain();
  impl->idle = std::make_unique<Latch>(impl->io.get_executor());
  if (impl->stats.active == 0) impl->idle->open();
  asio::co_spawn(
      impl->io,
      [impl, deadline, done]() -> awaitable<void> {
        asio::steady_timer timer(impl->io, deadline);
        co_await (impl->idle->wait() || timer.async_wait(use_tuple));
        if (impl->stats.active)
          spdlog::warn("proxy: drain deadline passed with {} connections open; closing them", impl->stats.active);
        auto served = impl->served;
        for (auto& c : served) c->close();
        for (auto& [key, conns] : impl->pool)
          for (auto& c : conns) c->close();
        done();
      },
      asio::detached);
}

ProxyStats Proxy::stats() const {
  ProxyStats s = impl_->stats;
  for (const auto& [key, conns] : impl_->pool)
    for (const auto& c : conns)
      if (c->usable()) {
        ++s.pool_connections;
        s.pool_streams += c->active_streams();
      }
  s.served_connections = impl_->served.size();
  return s;
}

size_t Proxy::reauthorize() { return impl_->reauthorize(); }

size_t Proxy::retire_connections() {
  size_t retired = 0;
  auto retire = [&](const std::shared_ptr<http2::Connection>& c) { retired += c->drain(); };
  for (auto& [key, conns] : impl_->pool) std::for_each(conns.begin(), conns.end(), retire);
  std::for_each(impl_->served.begin(), impl_->served.end(), retire);
  spdlog::info("proxy: {} HBONE connections retired: their open streams finish, new ones handshake again", retired);
  return retired;
}

}  // namespace zmesh
