// The control socket's server (see control_server.h).
#include "zmesh/json.h"
#include "control_server.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "zmesh/control.h"
#include "zmesh/maps_json.h"

namespace zmesh {
namespace {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using nlohmann::json;

}  // namespace

ControlServer::ControlServer(asio::io_context& io, std::filesystem::path socket_path, Controller& controller,
                             std::filesystem::path pin_root, std::function<void()> reload)
    : io_(io), path_(std::move(socket_path)), controller_(controller), pin_root_(std::move(pin_root)),
      reload_(std::move(reload)), acceptor_(io) {
  std::error_code fs_ec;
  std::filesystem::create_directories(path_.parent_path(), fs_ec);
  if (fs_ec) throw control::ControlError("control socket: create " + path_.parent_path().string() + ": " + fs_ec.message());
  if (std::filesystem::exists(path_)) {
    // A live daemon answers; a stale socket (a crashed daemon's) refuses.
    local::socket probe(io);
    boost::system::error_code ec;
    probe.connect(local::endpoint(path_.string()), ec);
    if (!ec)
      throw control::ControlError("control socket " + path_.string() +
                        " is served by another zmeshd (give each daemon its own --state-dir)");
    std::filesystem::remove(path_, fs_ec);
  }
  // Created with 0600 from the start: no window in which another user could connect.
  const mode_t old_mask = ::umask(0177);
  boost::system::error_code ec;
  acceptor_.open(local(), ec);
  if (!ec) acceptor_.bind(local::endpoint(path_.string()), ec);
  ::umask(old_mask);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw control::ControlError("control socket " + path_.string() + ": " + ec.message());
}

ControlServer::~ControlServer() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  std::error_code fs_ignored;
  std::filesystem::remove(path_, fs_ignored);
}

void ControlServer::start() {
  asio::co_spawn(
      io_,
      [this]() -> asio::awaitable<void> {
        while (acceptor_.is_open()) {
          auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
          if (ec == asio::error::operation_aborted) co_return;
          if (!ec) asio::co_spawn(io_, serve(std::move(socket)), asio::detached);
        }
      },
      asio::detached);
}

asio::awaitable<void> ControlServer::serve(local::socket socket) {
  json reply = json::object();
  ucred peer{};
  peer.uid = static_cast<uid_t>(-1);  // unknown until the kernel says: never root by default
  socklen_t len = sizeof peer;
  const bool known = getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &peer, &len) == 0;
  // The request is read from everyone, refused peers too: closing a socket with unread bytes
  // resets it, and the client would see ECONNRESET instead of the reason.
  // A client that sends nothing (or too slowly) is cut off at the deadline.
  asio::steady_timer deadline(io_, control::kRequestDeadline);
  deadline.async_wait([&socket](const boost::system::error_code& e) {
    if (!e) socket.close();
  });
  std::string line;
  auto buffer = asio::dynamic_buffer(line, control::kMaxRequestBytes);
  auto [ec, n] = co_await asio::async_read_until(socket, buffer, '\n', asio::as_tuple(asio::use_awaitable));
  deadline.cancel();
  if (ec && ec != asio::error::not_found) co_return;  // gone, or the deadline passed: nobody to answer
  if (!known || (peer.uid != 0 && peer.uid != ::geteuid())) {
    spdlog::warn("control: refused a request from uid {} (pid {})", peer.uid, peer.pid);
    reply["ok"] = false;
    reply["error"] = "permission denied: the control socket is for root; you are uid " + std::to_string(peer.uid);
  } else if (ec == asio::error::not_found) {
    reply["ok"] = false;
    reply["error"] = "request larger than " + std::to_string(control::kMaxRequestBytes) + " bytes";
  } else {
    try {
      reply["result"] = handle(line.substr(0, n));
      reply["ok"] = true;
    } catch (const std::exception& e) {
      reply["ok"] = false;
      reply["error"] = printable(e.what());
    }
  }
  const std::string out = json_text(reply) + "\n";
  co_await asio::async_write(socket, asio::buffer(out), asio::as_tuple(asio::use_awaitable));
  boost::system::error_code ignored;
  socket.shutdown(local::socket::shutdown_send, ignored);
}

json ControlServer::handle(const std::string& line) {
  const auto request = control::parse_request(line, controller_.node());
  using C = control::Request::Command;
  switch (request.command) {
    case C::Status: return controller_.status();
    case C::Workloads: return controller_.workloads();
    case C::Services: return controller_.services();
    case C::Policies: return controller_.policies();
    case C::Certs: return controller_.certificates();
    case C::Maps: {
      json maps = maps_json(PinnedMaps(pin_root_));
      std::map<uint64_t, std::string> by_id;  // a policy's ruleId is the kernel's rule id
      for (const auto& p : controller_.policies())
        by_id[p["ruleId"].get<uint64_t>()] = p["namespace"].get<std::string>() + "/" + p["name"].get<std::string>();
      for (auto& rule : maps["denyRules"])
        if (auto it = by_id.find(rule["rule"].get<uint64_t>()); it != by_id.end()) rule["policy"] = it->second;
      maps["pinRoot"] = pin_root_.string();
      return maps;
    }
    case C::Enroll: controller_.enroll(*request.workload); break;
    case C::Unenroll: controller_.unenroll(request.name); break;
    case C::PolicyApply: controller_.apply_policy(*request.policy); break;
    case C::PolicyDelete: controller_.delete_policy(request.name); break;
    case C::Reload: reload_(); break;
  }
  return controller_.status();
}

}  // namespace zmesh
