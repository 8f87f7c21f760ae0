// The policy routing that delivers steered packets locally: `ip rule add fwmark MARK lookup
// TABLE priority PRIO` and `ip route add local default dev lo table TABLE`, for IPv4 and IPv6,
// spoken directly in rtnetlink (no `ip` binary, no iptables). Acts on the caller's netns.
#pragma once

#include <cstdint>

namespace zmesh::datapath {

struct LocalDeliveryRoute {
  uint32_t mark;
  uint32_t table;
  uint32_t priority;
};

// Idempotent: what exists already is left as it is. Throws DatapathError.
void add_local_delivery(const LocalDeliveryRoute& route);
// Idempotent: what is missing is not an error. Throws DatapathError on other failures.
void remove_local_delivery(const LocalDeliveryRoute& route);

}  // namespace zmesh::datapath
