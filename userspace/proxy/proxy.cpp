// The node proxy (see include/zmesh/proxy.h): the composition of its parts, one file each as
// ztunnel splits its proxy — the listeners, the workers and their accept loops here;
// outbound.cpp, inbound.cpp (HBONE), inbound_passthrough.cpp (plaintext), pool.cpp (HBONE
// connections this node opened), copy.cpp (relays), connection_manager.cpp (grants,
// reauthorize, drain), labels.cpp (Istio labels and reports), fast_path.cpp (the kernel's
// same-node cache).
#include "zmesh/proxy.h"

#include <pthread.h>
#include <time.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <functional>
#include <optional>
#include <future>
#include <thread>

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

ProxyStats& ProxyStats::operator+=(const ProxyStats& o) {
  for (auto field : {&ProxyStats::outbound_accepted, &ProxyStats::inbound_hbone_accepted,
                     &ProxyStats::inbound_plain_accepted, &ProxyStats::client_handshakes,
                     &ProxyStats::server_handshakes, &ProxyStats::handshake_failures, &ProxyStats::streams_opened,
                     &ProxyStats::refused, &ProxyStats::denied, &ProxyStats::revoked, &ProxyStats::active,
                     &ProxyStats::pool_connections, &ProxyStats::pool_streams, &ProxyStats::served_connections})
    this->*field += o.*field;
  for (const auto& [why, n] : o.handshake_failures_by_reason) handshake_failures_by_reason[why] += n;
  return *this;
}

namespace {

// One event loop and everything a connection touches that is not shared across workers: the
// counters, the connections it serves (for reauthorize and drain), its HBONE pool. A
// connection lives on the worker that accepted it, so none of this needs a lock.
struct Worker {
  Worker(size_t i, asio::io_context& loop, ProxyInputs& in, const ProxyOptions& options, FastPathCache& fast_path,
         Balancer& balancer)
      : index(i),
        io(loop),
        connections(in.state),
        context{loop, in.state, in.certificates, in.telemetry, options, stats, connections},
        pool(context),
        outbound(context, in.originals, pool, fast_path, balancer),
        inbound(std::make_shared<InboundHbone>(context)),
        passthrough(context) {}

  ProxyStats snapshot() {
    ProxyStats s = stats;
    s.active = connections.active();
    s.revoked = connections.revoked();
    pool.count(s);
    s.served_connections = inbound->served();
    return s;
  }

  const size_t index;
  asio::io_context& io;
  ProxyStats stats;
  ConnectionManager connections;
  ProxyContext context;
  HbonePool pool;
  Outbound outbound;
  std::shared_ptr<InboundHbone> inbound;
  InboundPassthrough passthrough;
  std::optional<pthread_t> thread;  // once it runs: whose CPU time worker_stats() reads
};

// A worker's own thread and event loop (workers 1..N-1; worker 0 is the daemon's).
struct WorkerThread {
  // An event loop whose pending handlers (the coroutines of connections still open at exit,
  // which refer to their worker) can be destroyed while the worker still exists; its own
  // destructor would do that only after the worker is gone.
  struct Loop : asio::io_context {
    Loop() : asio::io_context(1) {}
    void destroy_pending() { shutdown(); }
  };
  Loop io;
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  std::thread thread;
};

}  // namespace

struct Proxy::Impl : std::enable_shared_from_this<Proxy::Impl> {
  explicit Impl(ProxyInputs& in)
      : io(in.io), options(in.options), fast_path(in.io, in.state, in.telemetry, in.fast_path) {
    const size_t n = std::max<size_t>(1, options.workers);
    for (size_t i = 1; i < n; ++i) threads.push_back(std::make_unique<WorkerThread>());
    for (size_t i = 0; i < n; ++i)
      workers.push_back(
          std::make_unique<Worker>(i, i == 0 ? in.io : threads[i - 1]->io, in, options, fast_path, balancer));
  }

  asio::io_context& io;  // the daemon's: worker 0, the listeners, the fast path's events
  ProxyOptions options;
  FastPathCache fast_path;
  Balancer balancer;
  std::vector<std::unique_ptr<WorkerThread>> threads;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<tcp::acceptor> outbound_listeners, hbone_listeners, plain_listeners;
  uint64_t next_id = 1;
  size_t next_worker = 0;

  using Handler = awaitable<void> (*)(Worker&, tcp::socket, uint64_t);

  // Runs `f` on `w`'s thread and waits for what it returns. Called on the daemon's thread,
  // which is worker 0's.
  template <class F>
  static auto on(Worker& w, F f) -> decltype(f()) {
    if (w.index == 0) return f();
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    asio::post(w.io, std::move(task));
    return result.get();
  }

  // Accepts on the daemon's thread; each connection goes to the next worker in turn and lives
  // there (its socket is made on that worker's loop). Counted as active for its life. Accept
  // errors (EMFILE and the like) back off instead of spinning on the same error.
  awaitable<void> accept_loop(tcp::acceptor& acceptor, Handler handler) {
    auto self = shared_from_this();
    auto backoff = std::chrono::milliseconds(10);
    asio::steady_timer timer(io);
    while (acceptor.is_open()) {
      Worker& worker = *workers[next_worker];
      auto [ec, socket] = co_await acceptor.async_accept(asio::any_io_executor(worker.io.get_executor()), use_tuple);
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
      next_worker = (next_worker + 1) % workers.size();
      no_delay(socket);
      const uint64_t id = next_id++;
      asio::co_spawn(
          worker.io,
          [self, &worker, handler, id, s = std::move(socket)]() mutable -> awaitable<void> {
            ConnectionManager::Active active(worker.connections);
            try {
              co_await handler(worker, std::move(s), id);
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

  void stop_threads() {
    for (auto& t : threads) {
      t->work.reset();
      t->io.stop();
      if (t->thread.joinable()) t->thread.join();
    }
  }
};

Proxy::Proxy(ProxyInputs inputs) : impl_(std::make_shared<Impl>(inputs)) {
  auto& impl = *impl_;
  const auto& o = impl.options;
  for (const auto& ip : o.outbound_addresses) impl.outbound_listeners.push_back(listen(inputs.io, {ip, o.outbound_port}, false));
  impl.hbone_listeners.push_back(listen(inputs.io, {asio::ip::address_v6::any(), o.inbound_hbone_port}, true));
  impl.plain_listeners.push_back(listen(inputs.io, {asio::ip::address_v6::any(), o.inbound_plain_port}, true));
}

Proxy::~Proxy() {
  impl_->stop_threads();  // first: no worker caches a verdict after the next line
  impl_->fast_path.stop_deciding();
}

void Proxy::start() {
  auto& impl = *impl_;
  impl.workers[0]->thread = pthread_self();
  for (size_t i = 1; i < impl.workers.size(); ++i) {
    auto& t = *impl.threads[i - 1];
    t.thread = std::thread([&io = t.io, i] {
      // Named, so that top -H and /proc/PID/task/*/comm tell the workers apart.
      pthread_setname_np(pthread_self(), ("zmesh-worker-" + std::to_string(i)).c_str());
      io.run();
      // The connections still open: their coroutines end here, on this thread, while its
      // buffer pools (thread_local) and its Worker still exist.
      io.destroy_pending();
    });
    impl.workers[i]->thread = t.thread.native_handle();
  }
  auto spawn = [&](std::vector<tcp::acceptor>& listeners, Impl::Handler handler) {
    for (auto& a : listeners) asio::co_spawn(impl.io, impl.accept_loop(a, handler), asio::detached);
  };
  spawn(impl.outbound_listeners, [](Worker& w, tcp::socket s, uint64_t id) { return w.outbound.serve(std::move(s), id); });
  spawn(impl.hbone_listeners, [](Worker& w, tcp::socket s, uint64_t id) { return w.inbound->serve(std::move(s), id); });
  spawn(impl.plain_listeners, [](Worker& w, tcp::socket s, uint64_t id) { return w.passthrough.serve(std::move(s), id); });
  for (auto& w : impl.workers)
    asio::co_spawn(w->io, [impl = impl_, &pool = w->pool]() -> awaitable<void> { co_await pool.reap_idle(); },
                   asio::detached);
  impl.fast_path.start();
  if (impl.workers.size() > 1) spdlog::info("proxy: {} workers, each with its own event loop and thread", impl.workers.size());
}

void Proxy::drain(std::chrono::milliseconds deadline, std::function<void()> done) {
  using namespace asio::experimental::awaitable_operators;
  auto impl = impl_;
  impl->close_listeners();
  impl->fast_path.stop_deciding();
  // Each worker drains its own connections; `done` runs on the daemon's thread when the last
  // one has finished.
  auto left = std::make_shared<size_t>(impl->workers.size());
  for (auto& worker : impl->workers) {
    asio::co_spawn(
        worker->io,
        [impl, &w = *worker, deadline, done, left]() -> awaitable<void> {
          w.inbound->drain();
          w.pool.drain();
          w.connections.draining(w.io.get_executor());
          asio::steady_timer timer(w.io, deadline);
          co_await (w.connections.idle() || timer.async_wait(use_tuple));
          if (w.connections.active())
            spdlog::warn("proxy: drain deadline passed with {} connections open on worker {}; closing them",
                         w.connections.active(), w.index);
          w.inbound->close();
          w.pool.close();
          asio::post(impl->io, [left, done] {
            if (--*left == 0) done();
          });
        },
        asio::detached);
  }
}

ProxyStats Proxy::stats() const {
  ProxyStats s;
  for (auto& w : impl_->workers) s += Impl::on(*w, [&w] { return w->snapshot(); });
  s.revoked += impl_->fast_path.revoked();
  return s;
}

std::vector<WorkerStats> Proxy::worker_stats() const {
  std::vector<WorkerStats> out;
  for (auto& w : impl_->workers) {
    WorkerStats ws{Impl::on(*w, [&w] { return w->snapshot(); })};
    clockid_t clock;
    timespec used{};
    if (w->thread && pthread_getcpuclockid(*w->thread, &clock) == 0 && clock_gettime(clock, &used) == 0)
      ws.cpu = std::chrono::seconds(used.tv_sec) + std::chrono::nanoseconds(used.tv_nsec);
    out.push_back(ws);
  }
  return out;
}

size_t Proxy::reauthorize() {
  size_t closed = impl_->fast_path.reauthorize();
  for (auto& w : impl_->workers) closed += Impl::on(*w, [&w] { return w->connections.reauthorize(); });
  return closed;
}

void Proxy::post_to_each_worker(const std::function<void()>& work) {
  for (auto& w : impl_->workers) asio::post(w->io, work);
}

size_t Proxy::retire_connections() {
  size_t retired = 0;
  for (auto& w : impl_->workers) retired += Impl::on(*w, [&w] { return w->pool.retire() + w->inbound->retire(); });
  spdlog::info("proxy: {} HBONE connections retired: their open streams finish, new ones handshake again", retired);
  return retired;
}

}  // namespace zmesh
