// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Outbound capture: cgroup/connect4 and cgroup/connect6.
 * - zm_connect4/6 on enrolled pods' cgroups: a TCP connect to a mesh destination (zm_dests, or
 *   inside a pod CIDR) is rewritten to the node proxy's outbound listener.
 * - zm_connect4/6_node on the node's host cgroup (--host-cgroup, the cgroup v2 root by
 *   default): a TCP connect from a process in the node's own netns to a pod of this node or a
 *   service VIP is rewritten the same way and marked as coming from the node, so that the
 *   proxy decides it as an identity-less source (a STRICT pod refuses it). The kubelet's probe
 *   cgroup and zmeshd itself are left alone; other netns (pods, other labs) are not the node.
 * The original destination is kept under the socket's cookie for sockops to move to the
 * connection's tuple once it has ports. Everything else passes untouched.
 * The fast path: a pod's connect to a pod of this node for which zmeshd cached an ALLOW of
 * the current generation (zm_fast_verdicts) is not redirected; it is marked under its cookie
 * (ZM_ORIG_FAST) for sockops to record the connection, whose SYN tc then lets in. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lib/addr.h"
#include "lib/config.h"
#include "lib/maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ZM_CONNECT_PROCEED 1 /* cgroup sock_addr programs: 1 = let the connect go on */

/* Whether a connect from the node itself is ours: a pod of this node, or a service VIP (whose
 * endpoint may be one). Other pods' addresses are left to their own nodes, which see this
 * node's plaintext like anyone else's. */
static __always_inline bool zm_node_destination(const struct zm_ip_key *dst)
{
	struct zm_dest *d;

	if (bpf_map_lookup_elem(&zm_workloads, dst))
		return true;
	d = bpf_map_lookup_elem(&zm_dests, dst);
	return d && d->kind == ZM_DEST_SERVICE;
}

/* Whether this connect is ours to capture: TCP, not zmeshd's own socket, a mesh destination
 * (an exact one, else inside a pod CIDR), and not the proxy's own address (the pods' gateway
 * lies inside their pod CIDR). From the node: see zm_node_destination. */
static __always_inline bool zm_capture(struct bpf_sock_addr *ctx, const struct zm_ip_key *dst, __u8 flags)
{
	struct bpf_sock *sk = ctx->sk;
	struct zm_cidr_key cidr = {};

	if (ctx->protocol != IPPROTO_TCP)
		return false;
	if (sk && zm_cfg.proxy_mark && sk->mark == zm_cfg.proxy_mark)
		return false;
	if (flags & ZM_ORIG_FROM_NODE)
		return zm_node_destination(dst);
	if (bpf_map_lookup_elem(&zm_dests, dst))
		return true;
	if (dst->family == ZM_AF_INET && dst->addr.v4 == zm_cfg.outbound_ip4.v4)
		return false;
	if (dst->family == ZM_AF_INET6 && zm_ip6_equal(&dst->addr, &zm_cfg.outbound_ip6))
		return false;
	cidr.prefixlen = ZM_CIDR_FAMILY_BITS + (dst->family == ZM_AF_INET ? 32 : 128);
	cidr.ip = *dst;
	return bpf_map_lookup_elem(&zm_dest_cidrs, &cidr) != NULL;
}

/* Remembers where the socket was going; -ENOSPC when the map refuses. */
static __always_inline int zm_remember_orig(struct bpf_sock_addr *ctx, const struct zm_ip_key *dst, __u8 flags,
					    __u64 generation)
{
	struct zm_orig orig = {
		.addr = dst->addr,
		.port = (__be16)ctx->user_port,
		.family = dst->family,
		.flags = flags,
		.netns_cookie = bpf_get_netns_cookie(ctx),
		.generation = generation,
	};
	__u64 cookie = bpf_get_socket_cookie(ctx);

	if (bpf_map_update_elem(&zm_cookie_orig, &cookie, &orig, BPF_ANY))
		return -ENOSPC;
	return 0;
}

/* The generation of zmeshd's cached ALLOW for this pod's connect to a pod of this node, when
 * it is the current one; 0 when there is none (the proxy decides). */
static __always_inline __u64 zm_fast_allowed(struct bpf_sock_addr *ctx, const struct zm_ip_key *dst)
{
	struct zm_fast_key key = { .netns_cookie = bpf_get_netns_cookie(ctx), .dst = *dst,
				   .dport = (__be16)ctx->user_port };
	struct zm_fast_verdict *verdict;
	struct zm_fast_state *state;
	__u32 zero = 0;

	/* Not for a socket of the node's netns (an enrolled hostNetwork pod is the node). */
	if (!zm_cfg.fast_path_enabled || key.netns_cookie == zm_cfg.node_netns_cookie ||
	    !bpf_map_lookup_elem(&zm_workloads, dst))
		return 0;
	verdict = bpf_map_lookup_elem(&zm_fast_verdicts, &key);
	state = bpf_map_lookup_elem(&zm_fast_state, &zero);
	if (!verdict || !state || !state->generation || verdict->generation != state->generation)
		return 0;
	return verdict->generation;
}

enum zm_connect_action { ZM_PASS, ZM_REDIRECT, ZM_REFUSE };

/* What to do with this connect (and its count). A capture whose original destination cannot
 * be stored is refused: the proxy could not serve it, and it must not bypass the mesh. */
static __always_inline enum zm_connect_action zm_decide(struct bpf_sock_addr *ctx, const struct zm_ip_key *dst,
						      __u8 flags)
{
	__u64 fast;

	if (!zm_capture(ctx, dst, flags)) {
		zm_count(connect_passed);
		return ZM_PASS;
	}
	/* A pod's connect only: the node has no identity a verdict could be cached for. If the
	 * mark cannot be stored, the proxy takes the connect as before. */
	fast = (flags & ZM_ORIG_FROM_NODE) ? 0 : zm_fast_allowed(ctx, dst);
	if (fast && !zm_remember_orig(ctx, dst, flags | ZM_ORIG_FAST, fast)) {
		zm_count(connect_fast);
		return ZM_PASS;
	}
	if (zm_remember_orig(ctx, dst, flags, 0)) {
		zm_count(connect_orig_full);
		return ZM_REFUSE;
	}
	zm_count(connect_redirected);
	if (flags & ZM_ORIG_FROM_NODE)
		zm_count(connect_from_node);
	ctx->user_port = bpf_htons(zm_cfg.outbound_port);
	return ZM_REDIRECT;
}

/* Whether the host-cgroup hooks act on this connect: a socket of the node's own netns, from
 * neither zmeshd nor the kubelet (whose probes must reach pods as they are). */
static __always_inline bool zm_node_connect(struct bpf_sock_addr *ctx)
{
	if (bpf_get_netns_cookie(ctx) != zm_cfg.node_netns_cookie)
		return false;
	if (zm_cfg.proxy_cgroup_id && bpf_get_current_cgroup_id() == zm_cfg.proxy_cgroup_id)
		return false;
	return !zm_cfg.probe_cgroup_id ||
	       bpf_get_current_ancestor_cgroup_id((int)zm_cfg.probe_cgroup_level) != zm_cfg.probe_cgroup_id;
}

static __always_inline int zm_connect4_as(struct bpf_sock_addr *ctx, __u8 flags)
{
	struct zm_ip_key dst = { .family = ZM_AF_INET, .addr.v4 = ctx->user_ip4 };
	enum zm_connect_action action = zm_decide(ctx, &dst, flags);

	if (action == ZM_REDIRECT)
		ctx->user_ip4 = zm_cfg.outbound_ip4.v4;
	return action == ZM_REFUSE ? 0 : ZM_CONNECT_PROCEED;
}

/* IPv6, and IPv4-mapped addresses on dual-stack sockets (which never reach connect4). */
static __always_inline int zm_connect6_as(struct bpf_sock_addr *ctx, __u8 flags)
{
	struct zm_ip_key dst = {};
	__u32 ip6[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
	enum zm_connect_action action;

	dst.family = zm_ip_from_sock(AF_INET6, 0, ip6, &dst.addr);
	action = zm_decide(ctx, &dst, flags);
	if (action != ZM_REDIRECT)
		return action == ZM_REFUSE ? 0 : ZM_CONNECT_PROCEED;
	if (dst.family == ZM_AF_INET) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = zm_cfg.outbound_ip4.v4;
	} else {
		ctx->user_ip6[0] = zm_cfg.outbound_ip6.v6[0];
		ctx->user_ip6[1] = zm_cfg.outbound_ip6.v6[1];
		ctx->user_ip6[2] = zm_cfg.outbound_ip6.v6[2];
		ctx->user_ip6[3] = zm_cfg.outbound_ip6.v6[3];
	}
	return ZM_CONNECT_PROCEED;
}

/* cgroup/connect4 on a pod's cgroup, outbound: capture a connect to a mesh IPv4 destination. */
SEC("cgroup/connect4")
int zm_connect4(struct bpf_sock_addr *ctx)
{
	return zm_connect4_as(ctx, 0);
}

/* cgroup/connect6 on a pod's cgroup, outbound: the same for IPv6. */
SEC("cgroup/connect6")
int zm_connect6(struct bpf_sock_addr *ctx)
{
	return zm_connect6_as(ctx, 0);
}

/* cgroup/connect4 on the host cgroup: the node's own connects to its pods and services. */
SEC("cgroup/connect4")
int zm_connect4_node(struct bpf_sock_addr *ctx)
{
	return zm_node_connect(ctx) ? zm_connect4_as(ctx, ZM_ORIG_FROM_NODE) : ZM_CONNECT_PROCEED;
}

/* cgroup/connect6 on the host cgroup: the same for IPv6. */
SEC("cgroup/connect6")
int zm_connect6_node(struct bpf_sock_addr *ctx)
{
	return zm_node_connect(ctx) ? zm_connect6_as(ctx, ZM_ORIG_FROM_NODE) : ZM_CONNECT_PROCEED;
}
