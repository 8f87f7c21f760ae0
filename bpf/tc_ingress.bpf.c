// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Inbound capture and the L4 deny fast path: TC ingress (tcx link, or clsact) on every
 * interface of the node's netns but lo (uplinks, tunnels, every pod's host-side veth), in the
 * node's netns.
 *
 * Frames the parser cannot read to the end are judged first:
 *   - more stacked VLAN tags than it reads                        -> drop (tc_drop_unparsed)
 *   - not IP (ARP, LLDP, ...)                                      -> pass
 * For a packet to a pod enrolled on this node (zm_workloads):
 *   0. behind VLAN tags in the frame's data (802.1Q or 802.1ad, stacked: the kernel strips
 *      priority tags after tc and would deliver the plain IP behind them) -> drop (tc_drop_tagged)
 *   1. not TCP: pass. zmesh meshes TCP, as ztunnel does; STRICT and policies govern TCP
 *      (docs/security.md says so). IPv4 names its protocol in every fragment.
 *      TCP whose header cannot be read (a fragment; or IPv6 behind an extension header, which
 *      may be anything)                                            -> drop (tc_drop_unparsed)
 *   2. a new connection (SYN without ACK):
 *        to the HBONE port        -> assign to zmeshd's listener there (tc_to_hbone)
 *        to another port          -> drop when zm_l4_deny matches (tc_drop_deny); pass when
 *                                    it is a fast-path connection from a pod of this node
 *                                    (zm_fast_conns, out of that pod's own veth: tc_fast_path);
 *                                    drop when the pod requires mTLS (tc_drop_mtls); else
 *                                    assign to the plaintext listener (tc_to_plaintext)
 *        no listener to assign to -> drop: zmeshd is down, fail closed (tc_drop_no_proxy)
 *      The deny map is not consulted for HBONE: those packets come from the source *node*,
 *      whose address says nothing about the client pod, and carry the real port inside the
 *      tunnel; the proxy decides them. Nor for packets of an established connection: a rule
 *      denies connections *to* the pod, not replies to the pod's own connections.
 *   3. any other TCP packet: from a pod of this node (its own veth) on a fast-path connection
 *      zmeshd revoked, either direction, but a reset -> drop (tc_drop_revoked). Else, if zmeshd owns a socket for its tuple (a connection steered in
 *      step 2, or one it opened to the pod from a client pod of this node), deliver to it
 *      (tc_followed); else pass (e.g. replies to the pod's own outbound connections). A
 *      packet with an enrolled pod's source address that did not come out of that pod's veth
 *      is never delivered to zmeshd's sockets: it passes, as without zmesh.
 * For a packet *from* a pod enrolled on this node, arriving on that pod's own veth, to an
 * address that is no pod of this node (step 3 handles those): zmeshd connects to a pod from
 * its client's own address (IP_TRANSPARENT), so the pod sees who called it, and the pod
 * answers that address. If zmeshd owns a socket for the packet's tuple, deliver it there
 * (tc_reply_to_proxy) instead of routing it off the node toward the client; else pass (the
 * pod's own connections). Packets to the proxy's own address skip the lookup: routing
 * delivers those to zmeshd anyway.
 * Steered packets get skb->mark = assign_mark; the node's `ip rule fwmark` sends them to a
 * table whose `local default dev lo` route delivers them locally, to the assigned socket.
 * What reaches a pod without crossing any of these hooks (the node's own processes, packets
 * NATed on the node) meets zm_tc_egress at the pod's veth (tc_egress.bpf.c). */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lib/config.h"
#include "lib/maps.h"
#include "lib/net.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define BPF_F_CURRENT_NETNS (-1L)

/* Whether zm_l4_deny holds a rule for this TCP packet: exact port first, then any port. */
static __always_inline bool zm_denied(const struct zm_pkt *p)
{
	struct zm_deny_key key = {
		.dst = p->dst,
		.dport = p->dport,
		.protocol = IPPROTO_TCP,
		.family = p->family,
		.src = p->src,
	};

	key.prefixlen = ZM_DENY_EXACT_BITS + (p->family == ZM_AF_INET ? 32 : 128);
	if (bpf_map_lookup_elem(&zm_l4_deny, &key))
		return true;
	key.dport = 0;
	return bpf_map_lookup_elem(&zm_l4_deny, &key) != NULL;
}

/* Looks up a socket in the node netns for (src:sport -> dst:dport); NULL when none. The
 * caller releases it. */
static __always_inline struct bpf_sock *zm_lookup(struct __sk_buff *skb, const struct zm_pkt *p, __be16 dport)
{
	struct bpf_sock_tuple tuple = {};
	__u32 size;

	if (p->family == ZM_AF_INET) {
		tuple.ipv4.saddr = p->src.v4;
		tuple.ipv4.daddr = p->dst.v4;
		tuple.ipv4.sport = p->sport;
		tuple.ipv4.dport = dport;
		size = sizeof(tuple.ipv4);
	} else {
		__builtin_memcpy(tuple.ipv6.saddr, &p->src, sizeof(tuple.ipv6.saddr));
		__builtin_memcpy(tuple.ipv6.daddr, &p->dst, sizeof(tuple.ipv6.daddr));
		tuple.ipv6.sport = p->sport;
		tuple.ipv6.dport = dport;
		size = sizeof(tuple.ipv6);
	}
	return bpf_skc_lookup_tcp(skb, &tuple, size, BPF_F_CURRENT_NETNS, 0);
}

/* Assigns skb to sk (releasing it) and marks it for local delivery; -errno when refused. */
static __always_inline int zm_assign(struct __sk_buff *skb, struct bpf_sock *sk)
{
	long err = bpf_sk_assign(skb, sk, 0);

	bpf_sk_release(sk);
	if (err)
		return (int)err;
	skb->mark = zm_cfg.assign_mark;
	return 0;
}

/* A new connection to a local pod: steer it to the listener on `port` (host order). */
static __always_inline int zm_steer_new(struct __sk_buff *skb, const struct zm_pkt *p, __u16 port)
{
	struct bpf_sock *sk = zm_lookup(skb, p, bpf_htons(port));

	if (!sk)
		return -ENOENT;
	/* A listener, or for a retransmitted SYN the connection it already made. */
	return zm_assign(skb, sk);
}

/* Where a packet with p's source address came from: that address is no pod enrolled here, or
 * the packet came out of that pod's own veth, or it did not (forged: never to be taken into a
 * connection of zmeshd's). */
enum zm_source { ZM_SRC_NOT_A_POD, ZM_SRC_POD_VETH, ZM_SRC_FORGED };

static __always_inline enum zm_source zm_pod_source(struct __sk_buff *skb, const struct zm_pkt *p)
{
	struct zm_ip_key src = { .family = p->family, .addr = p->src };
	struct zm_workload *from = bpf_map_lookup_elem(&zm_workloads, &src);

	if (!from)
		return ZM_SRC_NOT_A_POD;
	return from->ifindex == skb->ingress_ifindex ? ZM_SRC_POD_VETH : ZM_SRC_FORGED;
}

/* A pod's answer on a connection zmeshd opened to it from the client's address: delivered to
 * zmeshd's socket (0), or not such a packet (-ENOENT; the caller passes it). The pod must send
 * it through its own veth: a packet from the network claiming a pod's address is never taken
 * into zmeshd's connection. */
static __always_inline int zm_steer_reply(struct __sk_buff *skb, const struct zm_pkt *p)
{
	struct bpf_sock *sk;

	if (p->tags || p->protocol != IPPROTO_TCP || !p->l4_ok ||
	    (p->tcp_flags & (ZM_TCP_SYN | ZM_TCP_ACK)) == ZM_TCP_SYN || zm_is_proxy_ip(p->family, &p->dst) ||
	    zm_pod_source(skb, p) != ZM_SRC_POD_VETH)
		return -ENOENT;
	sk = zm_lookup(skb, p, p->dport);
	if (!sk)
		return -ENOENT;
	if (sk->state == BPF_TCP_LISTEN) {
		/* A node service on the client's port number: no connection of zmeshd's. */
		bpf_sk_release(sk);
		return -ENOENT;
	}
	/* Refused (the socket is closing): dropped, never routed off with the client's address. */
	return zm_assign(skb, sk) ? -EBUSY : 0;
}

/* TC ingress, inbound: see the comment at the top of this file. */
SEC("tc")
int zm_tc_ingress(struct __sk_buff *skb)
{
	struct zm_pkt p = {};
	struct zm_ip_key dst = {};
	struct zm_workload *wl;
	struct bpf_sock *sk;
	__u16 port;

	switch (zm_parse(skb, &p)) {
	case 0:
		break;
	case -E2BIG:
		/* Where it goes cannot be read, and the kernel may strip its tags and deliver it. */
		zm_count(tc_drop_unparsed);
		return TC_ACT_SHOT;
	default:
		zm_count(tc_passed);
		return TC_ACT_OK;
	}
	dst.family = p.family;
	dst.addr = p.dst;
	wl = bpf_map_lookup_elem(&zm_workloads, &dst);
	if (!wl) {
		switch (zm_steer_reply(skb, &p)) {
		case 0:
			zm_count(tc_reply_to_proxy);
			return TC_ACT_OK;
		case -ENOENT:
			zm_count(tc_passed);
			return TC_ACT_OK;
		default:
			/* zmeshd's connection, but the kernel would not assign: routed on, it would
			 * leave the node addressed to the client. */
			zm_count(tc_drop_assign);
			return TC_ACT_SHOT;
		}
	}
	if (p.tags) {
		/* Steering it would not survive the kernel's tag handling: nothing tagged reaches a pod. */
		zm_count(tc_drop_tagged);
		return TC_ACT_SHOT;
	}
	if (!zm_is_tcp(&p)) {
		zm_count(tc_passed);
		return TC_ACT_OK;
	}
	if (!p.l4_ok) {
		/* A SYN could hide behind a fragment or an IPv6 extension header: fail closed. */
		zm_count(tc_drop_unparsed);
		return TC_ACT_SHOT;
	}

	if ((p.tcp_flags & (ZM_TCP_SYN | ZM_TCP_ACK)) != ZM_TCP_SYN) {
		enum zm_source from = zm_pod_source(skb, &p);

		/* A reset passes: it is how the revoked connection ends (zmeshd destroys the client's
		 * socket, whose kernel sends one). */
		if (from == ZM_SRC_POD_VETH && !(p.tcp_flags & ZM_TCP_RST) &&
		    zm_fast_revoked(p.family, &p.src, p.sport, &p.dst, p.dport)) {
			zm_count(tc_drop_revoked);
			return TC_ACT_SHOT;
		}
		if (from == ZM_SRC_FORGED) {
			/* Routed as before zmesh, to the pod; never into zmeshd's connection (for a
			 * client on this node, zmeshd's socket there has both pods' addresses). */
			zm_count(tc_passed);
			return TC_ACT_OK;
		}
		sk = zm_lookup(skb, &p, p.dport);
		if (!sk) {
			zm_count(tc_passed);
			return TC_ACT_OK;
		}
		if (sk->state == BPF_TCP_LISTEN && bpf_ntohs(p.dport) != zm_cfg.inbound_hbone_port) {
			/* A node service listening on this port number, not a steered connection. */
			bpf_sk_release(sk);
			zm_count(tc_passed);
			return TC_ACT_OK;
		}
		if (zm_assign(skb, sk)) {
			zm_count(tc_drop_assign);
			return TC_ACT_SHOT;
		}
		zm_count(tc_followed);
		return TC_ACT_OK;
	}

	if (bpf_ntohs(p.dport) == zm_cfg.inbound_hbone_port) {
		port = zm_cfg.inbound_hbone_port;
	} else if (zm_denied(&p)) {
		zm_count(tc_drop_deny);
		return TC_ACT_SHOT;
	} else if (zm_fast_syn(p.family, &p.src, p.sport, &p.dst, p.dport, skb->ingress_ifindex)) {
		/* zmeshd allowed this pod to reach that one (docs/datapath.md "The fast path"). */
		zm_count(tc_fast_path);
		return TC_ACT_OK;
	} else if (wl->flags & ZM_WL_MTLS_STRICT) {
		zm_count(tc_drop_mtls);
		return TC_ACT_SHOT;
	} else {
		port = zm_cfg.inbound_plain_port;
	}
	/* Count the decision first, then the kernel's answer: a refused assign shows as both. */
	if (port == zm_cfg.inbound_hbone_port)
		zm_count(tc_to_hbone);
	else
		zm_count(tc_to_plaintext);
	switch (zm_steer_new(skb, &p, port)) {
	case 0:
		return TC_ACT_OK;
	case -ENOENT:
		zm_count(tc_drop_no_proxy);
		return TC_ACT_SHOT;
	default:
		zm_count(tc_drop_assign);
		return TC_ACT_SHOT;
	}
}
