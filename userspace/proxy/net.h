// The proxy's socket helpers: connects and listeners with zmeshd's conventions (its mark,
// TCP_NODELAY, IP_TRANSPARENT), deadlines on awaited operations, and the two ways a
// pod-facing socket ends (a clean close, a reset).
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <exception>
#include <optional>
#include <string>
#include <utility>

#include "zmesh/address.h"

namespace zmesh::proxy {

namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::tcp;
using error_code = boost::system::error_code;
using system_error = boost::system::system_error;
inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// NB for every co_await in this module: no temporary with a destructor inside a co_await
// expression (GCC 12 may destroy it twice); name such values first.

inline std::string text(const tcp::endpoint& ep) { return to_string(ep); }

// An accepted socket's peer and local address (unmapped); nullopt when it is already gone.
std::optional<std::pair<tcp::endpoint, tcp::endpoint>> ends_of(const tcp::socket& socket);

// A socket an application holds the other end of (a pod's, a plaintext client's) is armed to
// reset when it closes: if zmeshd dies mid-stream the kernel closes it with RST, and the
// application sees a failure, never a clean FIN on a truncated stream (close-delimited
// protocols would take that for the whole response). A relay that ends cleanly disarms it.
void reset_on_close(tcp::socket& socket);
void close_gracefully(tcp::socket& socket);
// Closes with RST, so the peer application learns the connection failed (not a clean end).
void abort_socket(tcp::socket& socket);

// Every proxy socket sends at once (TCP_NODELAY): a relay writes what it was given, and Nagle
// would hold the tail of each write (a partial segment, an HTTP/2 frame) until the previous
// one is acknowledged, which with delayed ACKs can be 40 ms. Envoy and ztunnel do the same.
void no_delay(tcp::socket& socket);

// A connect from the node, with zmeshd's mark (so no capture hook ever takes it, and the pod's
// door knows it), within `limit`. With `from`, the socket is bound to that address (any port)
// with IP_TRANSPARENT, so the target sees it as the source though the node does not own it;
// an error binding throws BindError.
struct BindError : system_error {
  using system_error::system_error;
};
awaitable<tcp::socket> connect(const tcp::endpoint& target, uint32_t mark, std::chrono::milliseconds limit,
                               const std::optional<asio::ip::address>& from = std::nullopt);

// A listener bound now (a taken port is an error naming it); `transparent` for the pods'
// addresses the tc program assigns to it.
tcp::acceptor listen(asio::io_context& io, const tcp::endpoint& at, bool transparent);

// Runs op with a deadline. Asio's `||` ends when one side *succeeds*, so a failing op would
// otherwise wait out the timer: op's outcome is turned into a value first.
template <typename Op>
awaitable<void> with_deadline(Op op, std::chrono::milliseconds limit, std::string what) {
  using namespace asio::experimental::awaitable_operators;
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

}  // namespace zmesh::proxy
