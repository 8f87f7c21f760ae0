// The control socket's server side (protocol: include/zmesh/control.h). Binds
// STATE_DIR/control.sock (mode 0600; refuses to start when another live zmeshd answers there,
// replaces a stale one), checks each peer's uid, reads one request under a size limit and a
// deadline, and hands it to the Controller.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <filesystem>
#include <functional>
#include <memory>

#include "controller.h"

namespace zmesh {

class ControlServer {
 public:
  // `maps` reads the daemon's pinned maps; `reload` does what SIGHUP does.
  ControlServer(boost::asio::io_context& io, std::filesystem::path socket_path, Controller& controller,
                std::filesystem::path pin_root, std::function<void()> reload);
  ~ControlServer();  // removes the socket file
  void start();

 private:
  boost::asio::awaitable<void> serve(boost::asio::local::stream_protocol::socket socket);
  nlohmann::json handle(const std::string& line);

  boost::asio::io_context& io_;
  std::filesystem::path path_;
  Controller& controller_;
  std::filesystem::path pin_root_;
  std::function<void()> reload_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
};

}  // namespace zmesh
