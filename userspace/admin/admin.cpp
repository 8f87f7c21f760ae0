// The admin HTTP server (see include/zmesh/admin.h).
#include "zmesh/admin.h"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <unistd.h>

#include "peer_uid.h"

namespace zmesh {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

}  // namespace

struct AdminServer::Impl : std::enable_shared_from_this<AdminServer::Impl> {
  asio::io_context& io;
  tcp::acceptor acceptor;
  std::map<std::string, Handler> routes;
  AdminLimits limits;
  size_t open = 0;
  std::map<asio::ip::address, size_t> open_from;
  uint64_t refused = 0;

  // Holds one connection's place in the limits (and the server) for its life.
  class Slot {
   public:
    Slot(std::shared_ptr<Impl> impl, asio::ip::address from) : impl_(std::move(impl)), from_(std::move(from)) {
      ++impl_->open;
      ++impl_->open_from[from_];
    }
    ~Slot() {
      --impl_->open;
      if (--impl_->open_from[from_] == 0) impl_->open_from.erase(from_);
    }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    std::shared_ptr<Impl> impl_;
    asio::ip::address from_;
  };

  Impl(asio::io_context& context, const tcp::endpoint& at, std::map<std::string, Handler> r, AdminLimits l)
      : io(context), acceptor(context), routes(std::move(r)), limits(l) {
    boost::system::error_code ec;
    acceptor.open(at.protocol(), ec);
    if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec && at.protocol() == tcp::v6()) acceptor.set_option(asio::ip::v6_only(false), ec);
    if (!ec) acceptor.bind(at, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      throw boost::system::system_error(
          ec, "admin: listen on port " + std::to_string(at.port()) +
                  (ec == asio::error::address_in_use ? " (is another zmeshd running in this network namespace?)" : ""));
  }

  asio::awaitable<void> serve(tcp::socket socket, std::unique_ptr<Slot> /*held while serving*/) {
    bool privileged = false;
    if (limits.identify_peers) {
      boost::system::error_code e1, e2;
      const auto peer = socket.remote_endpoint(e1), local = socket.local_endpoint(e2);
      const auto uid = e1 || e2 ? std::nullopt : loopback_peer_uid(peer, local);
      privileged = uid && (*uid == 0 || *uid == ::geteuid());
    }
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
      // A client that sends nothing (or too slowly) is closed: every wait has a deadline.
      stream.expires_after(std::chrono::seconds(10));
      http::request<http::string_body> request;
      auto [ec, n] = co_await http::async_read(stream, buffer, request, use_tuple);
      if (ec) co_return;
      const std::string target(request.target());
      const auto question = target.find('?');
      AdminRequest parsed{std::string(request.method_string()), target.substr(0, question), {}, privileged};
      if (question != std::string::npos) {
        std::string query = target.substr(question + 1);
        for (size_t at = 0; at <= query.size();) {
          const size_t end = std::min(query.find('&', at), query.size());
          const std::string pair = query.substr(at, end - at);
          const size_t eq = pair.find('=');
          if (!pair.empty()) parsed.query[pair.substr(0, eq)] = eq == std::string::npos ? "" : pair.substr(eq + 1);
          at = end + 1;
        }
      }
      AdminResponse answer;
      if (auto it = routes.find(parsed.path); it == routes.end()) {
        answer = {404, "text/plain; charset=utf-8", "no such endpoint: " + parsed.path + "\n"};
      } else {
        try {
          answer = it->second(parsed);
        } catch (const std::exception& e) {
          answer = {500, "text/plain; charset=utf-8", std::string(e.what()) + "\n"};
        }
      }
      http::response<http::string_body> response(static_cast<http::status>(answer.status), request.version());
      response.set(http::field::server, "zmeshd");
      response.set(http::field::content_type, answer.content_type);
      response.keep_alive(request.keep_alive());
      response.body() = std::move(answer.body);
      response.prepare_payload();
      auto [wec, written] = co_await http::async_write(stream, response, use_tuple);
      if (wec || !response.keep_alive()) co_return;
    }
  }

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    while (acceptor.is_open()) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec) {
        if (!acceptor.is_open()) break;
        asio::steady_timer pause(io, std::chrono::milliseconds(100));  // EMFILE and the like: back off
        co_await pause.async_wait(use_tuple);
        continue;
      }
      boost::system::error_code ep_ec;
      const auto from = socket.remote_endpoint(ep_ec).address();
      if (ep_ec) continue;
      if (open >= limits.connections || open_from[from] >= limits.per_client) {
        if (open_from[from] == 0) open_from.erase(from);
        // Closed unread: the client learns at once, and holds nothing of ours.
        if (refused++ % 1000 == 0)
          spdlog::warn("admin: {} on port {} refused: {} connections open ({} from it; limits {} and {} per client)",
                       from.to_string(), acceptor.local_endpoint().port(), open, open_from[from], limits.connections,
                       limits.per_client);
        continue;
      }
      asio::co_spawn(io, serve(std::move(socket), std::make_unique<Slot>(self, from)), asio::detached);
    }
  }
};

AdminServer::AdminServer(asio::io_context& io, const tcp::endpoint& at, std::map<std::string, Handler> routes,
                         AdminLimits limits)
    : impl_(std::make_shared<Impl>(io, at, std::move(routes), limits)) {}

uint64_t AdminServer::refused() const { return impl_->refused; }

AdminServer::~AdminServer() { stop(); }

void AdminServer::start() { asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached); }

void AdminServer::stop() {
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
}

}  // namespace zmesh
