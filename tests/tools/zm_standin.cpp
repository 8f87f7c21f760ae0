// zm-standin: stands in for zmeshd's proxy in the datapath tests. It listens where the proxy
// would (outbound 15001; transparent inbound 15008 and 15006), prints one JSON line per
// accepted connection (which listener, peer, local address, and for outbound the original
// destination recovered through the datapath's pinned maps), then echoes the bytes back.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "zmesh/address.h"
#include "zmesh/datapath.h"

namespace {

std::mutex out_mutex;

int listen_on(uint16_t port, bool transparent) {
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  int off = 0, on = 1;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (transparent &&
      (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &on, sizeof on) || setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &on, sizeof on))) {
    std::perror("zm-standin: IP_TRANSPARENT");
    std::exit(1);
  }
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) || listen(fd, 128)) {
    std::fprintf(stderr, "zm-standin: listen on %u: %s\n", port, std::strerror(errno));
    std::exit(1);
  }
  return fd;
}

zmesh::TcpEndpoint endpoint_of(int fd, bool peer) {
  zmesh::TcpEndpoint ep;
  socklen_t len = static_cast<socklen_t>(ep.capacity());
  if (peer) getpeername(fd, ep.data(), &len);
  else getsockname(fd, ep.data(), &len);
  ep.resize(len);
  return zmesh::unmapped(ep);  // dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d
}

std::string text(const zmesh::TcpEndpoint& ep) { return zmesh::to_string(ep); }

void serve(int listener, const char* name, const std::string& bpf_root) {
  for (;;) {
    int conn = accept(listener, nullptr, nullptr);
    if (conn < 0) continue;
    std::thread([conn, name, bpf_root] {
      const auto peer = endpoint_of(conn, true), local = endpoint_of(conn, false);
      std::string orig = "null";
      if (!bpf_root.empty()) {
        try {
          zmesh::PinnedMaps maps(bpf_root);
          if (auto dst = maps.take_original_destination(peer, local)) orig = "\"" + text(dst->target) + "\"";
        } catch (const std::exception& e) {
          std::fprintf(stderr, "zm-standin: %s\n", e.what());
        }
      }
      {
        std::lock_guard lock(out_mutex);
        std::printf("{\"listener\":\"%s\",\"peer\":\"%s\",\"local\":\"%s\",\"orig\":%s}\n", name, text(peer).c_str(),
                    text(local).c_str(), orig.c_str());
        std::fflush(stdout);
      }
      char buf[65536];
      for (ssize_t n; (n = read(conn, buf, sizeof buf)) > 0;)
        for (ssize_t off = 0; off < n;) {
          ssize_t w = write(conn, buf + off, static_cast<size_t>(n - off));
          if (w <= 0) break;
          off += w;
        }
      close(conn);
    }).detach();
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"zm-standin: a stand-in for zmeshd's listeners"};
  std::string bpf_root;
  uint16_t outbound = 15001, hbone = 15008, plain = 15006;
  app.add_option("--bpf-root", bpf_root, "the datapath's pin root, to recover original destinations");
  app.add_option("--outbound-port", outbound);
  app.add_option("--hbone-port", hbone);
  app.add_option("--plain-port", plain);
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // a client that went away ends its connection, not the stand-in
  int out_fd = listen_on(outbound, false), hbone_fd = listen_on(hbone, true), plain_fd = listen_on(plain, true);
  std::printf("{\"listening\":[%u,%u,%u]}\n", outbound, hbone, plain);
  std::fflush(stdout);
  std::thread(serve, hbone_fd, "hbone", std::string()).detach();
  std::thread(serve, plain_fd, "plaintext", std::string()).detach();
  serve(out_fd, "outbound", bpf_root);
}
