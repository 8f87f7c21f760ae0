// zm-echo: the TCP peer of the end-to-end tests and the demo. It sends a known byte pattern
// and checks every byte that comes back, so a test can tell that traffic arrived whole.
//   zm-echo serve --port P [--connections N] [--after-eof]
//                                              echo N concurrent connections (dual-stack), exit
//   zm-echo send --to ADDR --port P --bytes N  send N bytes, read the echo, verify it
//   zm-echo hold --to ADDR --port P --count N  open N idle connections, keep them until stdin closes
// Each prints one JSON line per connection: local and peer address, bytes, and for send
// whether the echo matched. send exits 1 on any mismatch or error (a reset says so on stderr),
// 2 when the connect times out (a dropped SYN), 3 when the connection ended cleanly (FIN)
// before the whole echo came back: a truncated stream that looked like a proper end.
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <mutex>
#include <thread>
#include <vector>

namespace {

uint8_t pattern(uint64_t i) { return static_cast<uint8_t>((i * 2654435761u) >> 13); }

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "zm-echo: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

std::string address(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (addr.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
  if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
    inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(in6->sin6_port));
  }
  inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
  return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
}

std::pair<std::string, std::string> endpoints(int fd) {
  sockaddr_storage local{}, peer{};
  socklen_t len = sizeof local;
  getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
  len = sizeof peer;
  getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len);
  return {address(local), address(peer)};
}

void set_timeout(int fd, int seconds) {
  timeval tv{seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

std::mutex out_mutex;

// One connection: echo as bytes arrive, or (after_eof) read to EOF first and then send it all
// back, which shows that a half-close crossed the mesh and the reply still came through.
void serve_one(int conn, bool after_eof) {
  set_timeout(conn, 30);
  auto [local, peer] = endpoints(conn);
  uint64_t bytes = 0;
  std::string error;
  std::vector<char> kept;
  char buf[65536];
  for (;;) {
    ssize_t n = read(conn, buf, sizeof buf);
    if (n < 0) error = std::strerror(errno);
    if (n <= 0) break;
    bytes += static_cast<uint64_t>(n);
    if (after_eof) {
      kept.insert(kept.end(), buf, buf + n);
      continue;
    }
    for (ssize_t off = 0; off < n && error.empty();) {
      ssize_t w = write(conn, buf + off, static_cast<size_t>(n - off));
      if (w <= 0) error = std::strerror(errno);  // a reset shows here as often as on read
      else off += w;
    }
    if (!error.empty()) break;
  }
  for (size_t off = 0; after_eof && error.empty() && off < kept.size();) {
    ssize_t w = write(conn, kept.data() + off, kept.size() - off);
    if (w <= 0) break;
    off += static_cast<size_t>(w);
  }
  std::lock_guard lock(out_mutex);
  std::printf("{\"local\":\"%s\",\"peer\":\"%s\",\"bytes\":%llu,\"error\":\"%s\"}\n", local.c_str(), peer.c_str(),
              static_cast<unsigned long long>(bytes), error.c_str());
  std::fflush(stdout);
  close(conn);
}

// Serves `connections` connections concurrently (a thread each), then exits.
int serve(uint16_t port, int connections, bool after_eof) {
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) fail("socket");
  int off = 0, on = 1;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons(port);
  addr.sin6_addr = in6addr_any;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail("bind port " + std::to_string(port));
  if (listen(fd, 1024) != 0) fail("listen");
  std::printf("{\"listening\":%u}\n", port);
  std::fflush(stdout);
  std::vector<std::thread> workers;
  for (int i = 0; i < connections; ++i) {
    int conn = accept(fd, nullptr, nullptr);
    if (conn < 0) fail("accept");
    workers.emplace_back(serve_one, conn, after_eof);
  }
  for (auto& w : workers) w.join();
  close(fd);
  return 0;
}

// The address to connect to; nullptr (with a message) when `to` is not a numeric address.
addrinfo* resolve(const std::string& to, uint16_t port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST;
  if (getaddrinfo(to.c_str(), std::to_string(port).c_str(), &hints, &res) == 0) return res;
  std::fprintf(stderr, "zm-echo: '%s' is not a numeric address\n", to.c_str());
  return nullptr;
}

// One thread, non-blocking, poll(): how proxies and servers drive a socket, and immune to
// wake-ups that are not data (see docs/datapath.md on the sockmap short-cut).
struct SendOptions {
  int connect_timeout_ms = 10000;
  int pause_ms = 0;       // after each write
  int read_pause_ms = 0;  // after each read: a slow download; says {"receiving":true} at its first bytes
  uint64_t abort_after = 0;
};

int send_and_verify(const std::string& to, uint16_t port, uint64_t total, const SendOptions& o) {
  const int connect_timeout_ms = o.connect_timeout_ms, pause_ms = o.pause_ms;
  const uint64_t abort_after = o.abort_after;
  addrinfo* res = resolve(to, port);
  if (!res) return 1;
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) fail("socket");
  const std::string target = to + ":" + std::to_string(port);
  if (connect(fd, res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS) fail("connect to " + target);
  freeaddrinfo(res);
  pollfd pfd{fd, POLLOUT, 0};
  if (poll(&pfd, 1, connect_timeout_ms) == 0) {
    std::fprintf(stderr, "zm-echo: connect to %s timed out after %d ms\n", target.c_str(), connect_timeout_ms);
    return 2;
  }
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) {
    errno = err;
    fail("connect to " + target);
  }
  auto [local, peer] = endpoints(fd);

  uint64_t sent = 0, received = 0;
  bool match = true, write_closed = false;
  std::vector<uint8_t> out(65536), in(65536);
  for (;;) {
    pfd.events = static_cast<short>(POLLIN | (write_closed ? 0 : POLLOUT));
    if (poll(&pfd, 1, 30000) == 0) {
      std::fprintf(stderr, "zm-echo: no progress for 30 s (sent %llu, received %llu)\n",
                   static_cast<unsigned long long>(sent), static_cast<unsigned long long>(received));
      return 1;
    }
    if (!write_closed && (pfd.revents & POLLOUT)) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), total - sent));
      for (size_t i = 0; i < n; ++i) out[i] = pattern(sent + i);
      ssize_t w = n ? write(fd, out.data(), n) : 0;
      if (w < 0 && errno != EAGAIN) fail("write");
      if (w > 0) sent += static_cast<uint64_t>(w);
      if (w > 0 && pause_ms > 0) usleep(static_cast<useconds_t>(pause_ms) * 1000);

      if (sent == total) {
        shutdown(fd, SHUT_WR);
        write_closed = true;
      }
    }
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(fd, in.data(), in.size());
      if (n < 0 && errno == EAGAIN) continue;
      if (n < 0) fail("read echo");
      if (n == 0) break;
      for (ssize_t i = 0; i < n; ++i)
        match = match && in[static_cast<size_t>(i)] == pattern(received + static_cast<uint64_t>(i));
      if (o.read_pause_ms > 0) {
        if (received == 0) {
          std::printf("{\"receiving\":true}\n");
          std::fflush(stdout);
        }
        usleep(static_cast<useconds_t>(o.read_pause_ms) * 1000);
      }
      received += static_cast<uint64_t>(n);
      if (abort_after && received >= abort_after) {
        // Abortive close (RST) once the echo proved the path works end to end: the far end must
        // see a reset, not an end.
        linger hard{1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
        close(fd);
        std::printf("{\"local\":\"%s\",\"received\":%llu,\"aborted\":true}\n", local.c_str(),
                    static_cast<unsigned long long>(received));
        return 0;
      }
    }
  }
  close(fd);
  const bool truncated = received < total;
  match = match && received == total && sent == total;
  std::printf("{\"local\":\"%s\",\"peer\":\"%s\",\"sent\":%llu,\"received\":%llu,\"match\":%s%s}\n", local.c_str(),
              peer.c_str(), static_cast<unsigned long long>(sent), static_cast<unsigned long long>(received),
              match ? "true" : "false", truncated ? ",\"truncated\":true" : "");
  if (truncated) {
    std::fprintf(stderr, "zm-echo: the connection ended cleanly (FIN) after %llu of %llu bytes\n",
                 static_cast<unsigned long long>(received), static_cast<unsigned long long>(total));
    return 3;
  }
  return match ? 0 : 1;
}

// Opens `count` connections and keeps them open and idle until stdin closes (or a signal):
// how the benchmarks measure a proxy's memory per open connection.
// With `ping`, every held connection does one redis PING/+PONG round trip after they are all
// open and again before they are closed: bytes verified on each, twice.
int ping_all(const std::vector<int>& fds) {
  int ok = 0;
  for (int fd : fds) {
    const char ping[] = "PING\r\n";
    char reply[8] = {};
    size_t got = 0;
    if (write(fd, ping, sizeof ping - 1) != static_cast<ssize_t>(sizeof ping - 1)) continue;
    while (got < 7) {
      const ssize_t n = read(fd, reply + got, 7 - got);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    if (got == 7 && std::string(reply, 7) == "+PONG\r\n") ++ok;
  }
  return ok;
}

int hold(const std::string& to, uint16_t port, int count, bool ping) {
  addrinfo* res = resolve(to, port);
  if (!res) return 1;
  std::vector<int> fds;
  for (int i = 0; i < count; ++i) {
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0) fail("socket (is the fd limit high enough?)");
    set_timeout(fd, 10);
    if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) fail("connect " + std::to_string(i + 1));
    fds.push_back(fd);
  }
  freeaddrinfo(res);
  if (ping) std::printf("{\"held\":%d,\"verified\":%d}\n", count, ping_all(fds));
  else std::printf("{\"held\":%d}\n", count);
  std::fflush(stdout);
  char c;
  while (read(STDIN_FILENO, &c, 1) > 0) {
  }
  if (ping) {
    std::printf("{\"released\":%d,\"verified\":%d}\n", count, ping_all(fds));
    std::fflush(stdout);
  }
  for (int fd : fds) close(fd);
  return 0;
}

// As many descriptors as the hard limit allows: holding thousands of connections needs them.
void raise_fd_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"zm-echo: a TCP peer that checks every byte"};
  app.require_subcommand(1);
  uint16_t port = 7000;
  int connections = 1;
  std::string to;
  uint64_t bytes = 1 << 20;
  SendOptions send_options;
  bool after_eof = false;
  auto* serve_cmd = app.add_subcommand("serve", "echo connections");
  serve_cmd->add_option("--port", port);
  serve_cmd->add_option("--connections", connections)->check(CLI::PositiveNumber);
  serve_cmd->add_flag("--after-eof", after_eof, "reply with everything only after the client half-closed");
  auto* send_cmd = app.add_subcommand("send", "send a pattern and verify the echo");
  send_cmd->add_option("--to", to)->required();
  send_cmd->add_option("--port", port);
  send_cmd->add_option("--bytes", bytes);
  send_cmd->add_option("--connect-timeout-ms", send_options.connect_timeout_ms,
                       "exit 2 when the connect does not finish in time");
  send_cmd->add_option("--pause-ms", send_options.pause_ms, "pause after each write (a slow, long-lived client)");
  send_cmd->add_option("--read-pause-ms", send_options.read_pause_ms,
                       "pause after each read (a slow download); prints {\"receiving\":true} at the first bytes");
  send_cmd->add_option("--abort-after", send_options.abort_after,
                       "reset the connection (RST) once this many bytes came back");
  int count = 1000;
  auto* hold_cmd = app.add_subcommand("hold", "open connections and keep them idle until stdin closes");
  hold_cmd->add_option("--to", to)->required();
  hold_cmd->add_option("--port", port);
  hold_cmd->add_option("--count", count)->check(CLI::PositiveNumber);
  bool ping = false;
  hold_cmd->add_flag("--ping", ping, "a redis PING/+PONG on every connection once all are open, and again at the end");
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  raise_fd_limit();
  if (hold_cmd->parsed()) return hold(to, port, count, ping);  // a write to a reset connection is reported, not fatal
  return serve_cmd->parsed() ? serve(port, connections, after_eof)
                             : send_and_verify(to, port, bytes, send_options);
}
