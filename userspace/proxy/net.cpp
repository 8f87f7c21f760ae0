// The proxy's socket helpers (see net.h).
#include "net.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio/ip/v6_only.hpp>

namespace zmesh::proxy {

std::optional<std::pair<tcp::endpoint, tcp::endpoint>> ends_of(const tcp::socket& socket) {
  error_code ec1, ec2;
  auto peer = socket.remote_endpoint(ec1), local = socket.local_endpoint(ec2);
  if (ec1 || ec2) return std::nullopt;
  return std::pair{unmapped(peer), unmapped(local)};
}

void reset_on_close(tcp::socket& socket) {
  error_code ignored;
  socket.set_option(asio::socket_base::linger(true, 0), ignored);
}

void close_gracefully(tcp::socket& socket) {
  error_code ignored;
  socket.set_option(asio::socket_base::linger(false, 0), ignored);
}

void abort_socket(tcp::socket& socket) {
  error_code ignored;
  reset_on_close(socket);
  socket.close(ignored);
}

void no_delay(tcp::socket& socket) {
  error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
}

awaitable<tcp::socket> connect(const tcp::endpoint& target, uint32_t mark, std::chrono::milliseconds limit,
                               const std::optional<asio::ip::address>& from) {
  tcp::socket socket(co_await asio::this_coro::executor);
  socket.open(target.protocol());
  no_delay(socket);
  setsockopt(socket.native_handle(), SOL_SOCKET, SO_MARK, &mark, sizeof mark);
  if (from) {
    const int fd = socket.native_handle(), on = 1;
    const bool v4 = target.protocol() == tcp::v4();
    // The port is chosen at connect, per destination, not at bind: a client address may have
    // many connections to many pods at once.
    if (setsockopt(fd, v4 ? SOL_IP : SOL_IPV6, v4 ? IP_TRANSPARENT : IPV6_TRANSPARENT, &on, sizeof on) != 0 ||
        setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on) != 0)
      throw BindError(error_code(errno, boost::system::system_category()), "set IP_TRANSPARENT");
    error_code ec;
    socket.bind(tcp::endpoint(*from, 0), ec);
    if (ec) throw BindError(ec, "bind to " + from->to_string());
  }
  const std::string what = "connect to " + text(target) + " timed out";
  co_await with_deadline(socket.async_connect(target, asio::use_awaitable), limit, what);
  co_return socket;
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

}  // namespace zmesh::proxy
