// Relays and their buffers (see copy.h).
#include "copy.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/write.hpp>
#include <vector>

namespace zmesh::proxy {
namespace {

using namespace asio::experimental::awaitable_operators;

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
// One per thread: no locking. Keeps a few free buffers for the next lease; the rest are mapped
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
  thread_local BufferPool pool;  // one per worker thread: a lease and its return are on one thread
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

// Pipes for splice(2), leased like the buffers above: only while bytes are in flight, a few
// kept per thread for the next lease. A lease given back with bytes still in its pipe (the
// relay failed between the two splices) closes that pipe instead of keeping it.
class PipePool {
 public:
  struct Pipe {
    int read = -1, write = -1;
  };
  class Lease {
   public:
    explicit Lease(PipePool& pool) : pool_(pool), pipe_(pool.take()) {}
    ~Lease() { pool_.give(pipe_, empty); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    bool ok() const { return pipe_.read >= 0; }
    const Pipe& pipe() const { return pipe_; }
    bool empty = true;  // the relay says when bytes sit in the pipe

   private:
    PipePool& pool_;
    Pipe pipe_;
  };
  ~PipePool() {
    for (const auto& p : free_) close_pipe(p);
  }

 private:
  static constexpr size_t kKeep = 8;
  static void close_pipe(const Pipe& p) {
    ::close(p.read);
    ::close(p.write);
  }
  Pipe take() {
    if (!free_.empty()) {
      Pipe p = free_.back();
      free_.pop_back();
      return p;
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return {};  // EMFILE and the like: copy instead
    // As much per splice as a buffer holds per read; the default 64 KiB when not allowed.
    fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(BufferPool::kSize));
    return {fds[0], fds[1]};
  }
  void give(const Pipe& p, bool empty) {
    if (p.read < 0) return;
    if (empty && free_.size() < kKeep)
      free_.push_back(p);
    else
      close_pipe(p);
  }
  std::vector<Pipe> free_;
};

PipePool& pipes() {
  thread_local PipePool pool;  // one per worker thread, as the buffers
  return pool;
}

// What pipe() does, with the kernel moving the bytes: socket -> pipe -> socket with splice(2),
// never through userspace (the hops with no TLS: same-node through the proxy, plaintext 15006,
// a workload outside the mesh). Without a pipe (no descriptors left) it goes on with pipe().
awaitable<void> splice_pipe(tcp::socket& from, tcp::socket& to, uint64_t& count, const bool& from_fin_sent,
                            bool& to_fin_sent) {
  // splice has no MSG_NOSIGNAL: into a socket whose reset was already read (by the other
  // direction, or the reset watch) it raises SIGPIPE, which would end zmeshd. Ignored
  // process-wide from the first splice relay on, as servers do; the EPIPE is the relay's error.
  static const bool sigpipe_ignored = [] { return signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();
  (void)sigpipe_ignored;
  from.native_non_blocking(true);
  to.native_non_blocking(true);
  for (;;) {
    auto [wait_ec] = co_await from.async_wait(tcp::socket::wait_read, use_tuple);
    if (wait_ec) throw system_error(wait_ec);
    PipePool::Lease lease(pipes());
    if (!lease.ok()) {  // no pipe to be had: this direction copies from now on
      co_await pipe(from, to, count, from_fin_sent, to_fin_sent);
      co_return;
    }
    const ssize_t in = splice(from.native_handle(), nullptr, lease.pipe().write, nullptr, BufferPool::kSize,
                              SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (in < 0 && errno == EAGAIN) continue;  // readable, then not: wait again
    if (in < 0) throw system_error(error_code(errno, boost::system::system_category()));
    if (in == 0) {  // EOF, or a reset the other direction already consumed (see pipe())
      if (reset_by_peer(from, from_fin_sent)) throw system_error(asio::error::connection_reset);
      error_code ignored;
      to_fin_sent = true;
      to.shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
    lease.empty = false;
    for (size_t left = static_cast<size_t>(in); left > 0;) {
      const ssize_t out =
          splice(lease.pipe().read, nullptr, to.native_handle(), nullptr, left, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (out < 0 && errno == EAGAIN) {  // the receiver's buffer is full: wait for room
        auto [ec] = co_await to.async_wait(tcp::socket::wait_write, use_tuple);
        if (ec) throw system_error(ec);
        continue;
      }
      if (out < 0) throw system_error(error_code(errno, boost::system::system_category()));
      left -= static_cast<size_t>(out);
    }
    lease.empty = true;
    count += static_cast<uint64_t>(in);
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


}  // namespace

awaitable<RelayResult> relay(tcp::socket& a, tcp::socket& b, bool splice) {
  RelayResult result;
  try {
    FinSent fin;
    auto one_way = splice ? splice_pipe : pipe;
    co_await until_reset(
        until_reset(one_way(a, b, result.sent, fin.a, fin.b) && one_way(b, a, result.received, fin.b, fin.a), a), b);
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

}  // namespace zmesh::proxy
