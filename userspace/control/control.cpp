// The control socket's client side (see include/zmesh/control.h).
#include "zmesh/json.h"
#include "zmesh/control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace zmesh::control {
namespace {

std::string why(int err) {
  switch (err) {
    case ENOENT: return "no such socket (is zmeshd running with this --state-dir? pick one with --socket)";
    case ECONNREFUSED: return "connection refused (zmeshd is not running; the socket is stale)";
    case EACCES: return "permission denied (the control socket is for root)";
    default: return std::strerror(err);
  }
}

}  // namespace

nlohmann::json call(const std::filesystem::path& socket_path, const nlohmann::json& request,
                    std::chrono::milliseconds timeout) {
  const std::string where = "zmeshd at " + socket_path.string();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.string().size() >= sizeof addr.sun_path)
    throw ControlError(where + ": the socket path is too long for a Unix socket");
  std::strcpy(addr.sun_path, socket_path.c_str());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ControlError("socket: " + std::string(std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw ControlError("cannot reach " + where + ": " + why(errno));
  const std::string line = json_text(request) + "\n";
  for (size_t off = 0; off < line.size();) {
    const ssize_t n = ::send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ControlError("sending to " + where + ": " + std::strerror(errno));
    off += static_cast<size_t>(n);
  }
  std::string reply;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) throw ControlError(where + " did not answer within " + std::to_string(timeout.count()) + " ms");
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ControlError("reading from " + where + ": " + std::strerror(errno));
    if (n == 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  nlohmann::json answer;
  try {
    answer = parse_json(reply);
  } catch (const JsonError& e) {
    throw ControlError(where + " sent a reply that is not JSON (" + e.what() + "): '" + printable(reply.substr(0, 200)) +
                       "'");
  }
  if (!answer.is_object() || !answer.contains("ok") || !answer["ok"].is_boolean())
    throw ControlError(where + " sent an unexpected reply: " + printable(reply.substr(0, 200)));
  if (!answer["ok"].get<bool>()) throw ControlError(answer.value("error", std::string("(no error text)")));
  return answer.value("result", nlohmann::json());
}

}  // namespace zmesh::control
