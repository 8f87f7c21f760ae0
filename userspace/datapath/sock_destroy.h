// Resetting a pod's TCP connection from the node: the socket is found in the pod's own netns
// and destroyed there (sock_diag SOCK_DESTROY, CONFIG_INET_DIAG_DESTROY), which sends the peer
// a reset. The fast path's way of taking back a connection a new policy denies.
#pragma once

#include <cstdint>
#include <filesystem>

#include "zmesh/datapath.h"

namespace zmesh::datapath {

// Destroys the socket `local` -> `remote` in the netns whose cookie is `netns_cookie`, found
// through a process of the pod's cgroup `pod_cgroup` (or one below it). Returns false when no
// such socket exists any more (closed already); throws DatapathError when it cannot be done
// (no process of the pod left in that netns, sock_diag refused).
bool destroy_pod_socket(const std::filesystem::path& pod_cgroup, uint64_t netns_cookie, const TcpEndpoint& local,
                        const TcpEndpoint& remote);

}  // namespace zmesh::datapath
