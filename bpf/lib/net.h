/* Bounds-checked header parsing shared by the TC programs. */
#ifndef ZMESH_LIB_NET_H
#define ZMESH_LIB_NET_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "zmesh_maps.h"

/* What the TC programs need to know of a packet. */
struct zm_pkt {
	__u8 family;   /* ZM_AF_INET/ZM_AF_INET6, 0 when not IP */
	__u8 protocol; /* L4 protocol */
	__u8 tcp_flags;
	union zm_ip src;
	union zm_ip dst;
	__be16 sport;
	__be16 dport;
	__u8 l4_ok; /* the TCP/UDP header was read; 0 for fragments, IPv6 extension headers, runts */
	__u8 tags;  /* VLAN tags found in the frame's data before the IP header */
};

#define ZM_TCP_SYN 0x02
#define ZM_TCP_RST 0x04
#define ZM_TCP_ACK 0x10

/* VLAN tags the kernel strips after tc: the first is pulled into skb->vlan_tci before tc
 * runs, and after tc every further priority tag (VID 0) is stripped in a loop without tc
 * running again. A frame carrying tags in its data therefore reaches the IP layer as the plain
 * IP packet behind them: the parser must look behind them too. */
#define ZM_MAX_VLAN_TAGS 4
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

struct zm_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* Parses Ethernet (behind up to ZM_MAX_VLAN_TAGS tags), IPv4/IPv6 and the TCP/UDP ports of
 * skb. Returns 0 when an IP header was read, -EINVAL for a runt or a frame that is not IP, and
 * -E2BIG when more tags stack up than the parser reads (it cannot tell where such a frame
 * goes). l4_ok says whether the L4 header was read: not for IPv4 fragments, IPv6 packets with
 * extension headers, or truncated headers (the caller must not take those for harmless: a SYN
 * can hide behind any of them). */
static __always_inline int zm_parse(struct __sk_buff *skb, struct zm_pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	void *l3 = eth + 1;
	__be16 proto;
	void *l4;

	if (l3 > data_end)
		return -EINVAL;
	proto = eth->h_proto;
#pragma unroll
	for (int i = 0; i < ZM_MAX_VLAN_TAGS; i++) {
		struct zm_vlan_hdr *vlan = l3;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vlan + 1) > data_end)
			return -EINVAL;
		proto = vlan->proto;
		l3 = vlan + 1;
		p->tags++;
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return -E2BIG;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip4 = l3;

		if ((void *)(ip4 + 1) > data_end || ip4->ihl < 5)
			return -EINVAL;
		p->family = ZM_AF_INET;
		p->protocol = ip4->protocol;
		p->src.v4 = ip4->saddr;
		p->dst.v4 = ip4->daddr;
		if (ip4->frag_off & bpf_htons(0x3fff)) /* MF or an offset: a fragment */
			return 0;
		l4 = (void *)ip4 + ip4->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > data_end)
			return -EINVAL;
		p->family = ZM_AF_INET6;
		p->protocol = ip6->nexthdr;
		__builtin_memcpy(&p->src, &ip6->saddr, sizeof(p->src));
		__builtin_memcpy(&p->dst, &ip6->daddr, sizeof(p->dst));
		l4 = ip6 + 1;
	} else {
		return -EINVAL;
	}
	if (p->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end)
			return 0;
		p->sport = tcp->source;
		p->dport = tcp->dest;
		p->tcp_flags = ((__u8 *)tcp)[13];
		p->l4_ok = 1;
	} else if (p->protocol == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end)
			return 0;
		p->sport = udp->source;
		p->dport = udp->dest;
		p->l4_ok = 1;
	} else if (p->family == ZM_AF_INET) {
		p->l4_ok = 1; /* another IPv4 protocol (ICMP, ...): nothing to read */
	} else if (p->protocol == 58 /* ICMPv6 */ || p->protocol == 59 /* no next header */) {
		p->l4_ok = 1; /* anything else after IPv6 is an extension header or unknown */
	}
	return 0;
}

/* Whether the packet may be TCP: IPv4 names its protocol even in a fragment; after an IPv6
 * header zm_parse does not walk (an extension header) anything may follow. */
static __always_inline bool zm_is_tcp(const struct zm_pkt *p)
{
	if (p->protocol == IPPROTO_TCP)
		return true;
	return p->family == ZM_AF_INET6 && !p->l4_ok;
}

#endif
