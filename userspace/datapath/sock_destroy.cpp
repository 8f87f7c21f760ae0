// destroy_pod_socket (sock_destroy.h).
#include "sock_destroy.h"

#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>

#include <cerrno>
#include <fstream>
#include <system_error>
#include <thread>

#include "fd.h"
#include "zmesh/datapath_error.h"
#include "zmesh/sock_diag.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace zmesh::datapath {
namespace fs = std::filesystem;
namespace {

uint64_t cookie_of_current_netns() {
  UniqueFd probe(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  if (!probe || getsockopt(probe.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) return 0;
  return cookie;
}

// The pids of the processes in `cgroup` and the cgroups below it.
std::vector<int> pids_below(const fs::path& cgroup) {
  std::vector<int> pids;
  auto read_procs = [&](const fs::path& dir) {
    std::ifstream in(dir / "cgroup.procs");
    for (int pid; in >> pid;) pids.push_back(pid);
  };
  std::error_code ec;
  read_procs(cgroup);
  for (fs::recursive_directory_iterator it(cgroup, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory(ec)) read_procs(it->path());
  return pids;
}

// SOCK_DESTROY of local -> remote, bound to interface `ifindex` (0: to none), in the caller's
// netns: 0, or the kernel's errno.
int sock_diag_destroy(const TcpEndpoint& local, const TcpEndpoint& remote, unsigned ifindex) {
  UniqueFd nl(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) return errno;
  const SockDiagRequest message = sock_diag_request(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, local, remote, ifindex);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(nl.get(), &message, sizeof message, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
    return errno;
  alignas(nlmsghdr) char answer[512];
  const ssize_t n = recv(nl.get(), answer, sizeof answer, 0);
  if (n < static_cast<ssize_t>(sizeof(nlmsghdr) + sizeof(nlmsgerr))) return n < 0 ? errno : EPROTO;
  const auto* header = reinterpret_cast<const nlmsghdr*>(answer);
  if (header->nlmsg_type != NLMSG_ERROR) return EPROTO;
  return -static_cast<const nlmsgerr*>(NLMSG_DATA(header))->error;
}

// On a thread of its own: enters the pod's netns (through a process of its cgroup whose netns
// has that cookie) and destroys the socket there. ESRCH: no such process.
int destroy_from_pod(const fs::path& pod_cgroup, uint64_t netns_cookie, const TcpEndpoint& local,
                     const TcpEndpoint& remote) {
  for (int pid : pids_below(pod_cgroup)) {
    UniqueFd ns(open(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns || setns(ns.get(), CLONE_NEWNET) != 0) continue;
    if (cookie_of_current_netns() != netns_cookie) continue;  // a process of the pod in another netns
    // The kernel finds a socket bound to an interface (SO_BINDTODEVICE) only under that
    // interface's index: every interface of the pod is tried before "no such socket".
    int result = sock_diag_destroy(local, remote, 0);
    if (result != ENOENT) return result;
    if (struct if_nameindex* names = if_nameindex()) {
      for (auto* n = names; n->if_index != 0 && result == ENOENT; ++n)
        result = sock_diag_destroy(local, remote, n->if_index);
      if_freenameindex(names);
    }
    return result;
  }
  return ESRCH;
}

}  // namespace

bool destroy_pod_socket(const fs::path& pod_cgroup, uint64_t netns_cookie, const TcpEndpoint& local,
                        const TcpEndpoint& remote) {
  const std::string what = "reset " + local.address().to_string() + ":" + std::to_string(local.port()) + " -> " +
                           remote.address().to_string() + ":" + std::to_string(remote.port());
  // setns() moves only the calling thread: a thread of its own enters the pod's netns.
  int result = ESRCH;
  std::thread worker;
  try {
    worker = std::thread([&] { result = destroy_from_pod(pod_cgroup, netns_cookie, local, remote); });
  } catch (const std::system_error& e) {
    throw DatapathError(what + ": start a thread for the pod's netns", e.code().value());
  }
  worker.join();
  if (result == 0) return true;
  if (result == ENOENT) return false;
  if (result == ESRCH)
    throw DatapathError(what + ": no process of the pod's cgroup " + pod_cgroup.string() + " is in its netns", ESRCH);
  throw DatapathError(what + " (sock_diag SOCK_DESTROY in the pod's netns)", result);
}

}  // namespace zmesh::datapath
