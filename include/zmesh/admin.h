// The admin endpoints: small HTTP/1.1 servers (Boost.Beast) on the daemon's executor.
//   :15021 /healthz/ready   200 once the datapath is attached and certificates are loaded,
//                           503 before that and while draining
//   :15020 /metrics         Prometheus text: Istio's TCP metrics, zmesh's, the kernel's
//   127.0.0.1:15000 /stats (JSON), /config_dump (the mesh as this node sees it),
//                   /logging (GET shows, POST ?level=debug changes), /quitquitquit (drain, exit);
//                   the last two change the daemon: root (or zmeshd's own uid) only, told by
//                   the kernel's owner of the peer socket (request.privileged)
// Every request has a deadline; bodies are produced on demand from the handlers given. Each
// listener holds at most a bounded number of connections, in all and per client address: the
// rest are closed at once, so idle connections from pods or other nodes cannot take the
// descriptors the proxy needs.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace zmesh {

struct AdminRequest {
  std::string method;                        // "GET", "POST", ...
  std::string path;                          // without the query
  std::map<std::string, std::string> query;  // ?a=1&b=2 (no percent-decoding: values are plain words)
  bool privileged = false;                   // the peer's socket belongs to root or to zmeshd's uid
};

struct AdminLimits {
  size_t connections = 64;  // open at once on the listener
  size_t per_client = 8;    // open at once from one address
  bool identify_peers = false;  // look up each peer's uid (loopback listeners only)
};

struct AdminResponse {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class AdminServer {
 public:
  using Handler = std::function<AdminResponse(const AdminRequest&)>;
  static constexpr uint16_t kAdminPort = 15000;
  static constexpr uint16_t kMetricsPort = 15020;
  static constexpr uint16_t kReadinessPort = 15021;

  // Binds now (a taken port fails start-up); serves `routes` (path -> handler) once started.
  AdminServer(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& at, std::map<std::string, Handler> routes,
              AdminLimits limits = {});
  // Connections closed at once because a limit was reached.
  uint64_t refused() const;
  ~AdminServer();
  void start();
  void stop();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace zmesh
