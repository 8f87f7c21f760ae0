/* The runtime config (struct zm_config) each program reads, set by userspace in rodata. */
#ifndef ZMESH_LIB_CONFIG_H
#define ZMESH_LIB_CONFIG_H

#include "addr.h"
#include "zmesh_maps.h"

const volatile struct zm_config zm_cfg = {};

/* Whether (family, ip) is the proxy's address, the one the pods reach it at. */
static __always_inline bool zm_is_proxy_ip(__u8 family, const union zm_ip *ip)
{
	if (family == ZM_AF_INET)
		return ip->v4 == zm_cfg.outbound_ip4.v4;
	return family == ZM_AF_INET6 && zm_ip6_equal(ip, &zm_cfg.outbound_ip6);
}

#endif
