/* Address helpers: building zm_ip_key/zm_tuple from socket contexts, IPv4-mapped IPv6. */
#ifndef ZMESH_LIB_ADDR_H
#define ZMESH_LIB_ADDR_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>

#include "common.h"
#include "zmesh_maps.h"

/* ::ffff:a.b.c.d, which dual-stack sockets use for IPv4 peers. */
static __always_inline bool zm_is_v4mapped(const __u32 *ip6)
{
	return ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0x0000ffff);
}

static __always_inline bool zm_ip6_equal(const union zm_ip *a, const volatile union zm_ip *b)
{
	return a->v6[0] == b->v6[0] && a->v6[1] == b->v6[1] && a->v6[2] == b->v6[2] && a->v6[3] == b->v6[3];
}

/* Fills `ip` and returns the family from a socket's (family, ip4, ip6) view, folding
 * IPv4-mapped IPv6 into IPv4 so that both ends of a dual-stack connection key alike. */
static __always_inline __u8 zm_ip_from_sock(__u32 sk_family, __u32 ip4, const __u32 *ip6, union zm_ip *ip)
{
	if (sk_family == AF_INET) {
		ip->v4 = ip4;
		return ZM_AF_INET;
	}
	if (zm_is_v4mapped(ip6)) {
		ip->v4 = ip6[3];
		return ZM_AF_INET;
	}
	ip->v6[0] = ip6[0];
	ip->v6[1] = ip6[1];
	ip->v6[2] = ip6[2];
	ip->v6[3] = ip6[3];
	return ZM_AF_INET6;
}

#endif
