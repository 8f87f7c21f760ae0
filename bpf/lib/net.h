/* Packet constants and bounds-checked header parsing shared by the TC programs. */
#ifndef ZMESH_LIB_NET_H
#define ZMESH_LIB_NET_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Macros from uapi headers, which vmlinux.h cannot carry. */
#define EINVAL 22
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* L3 facts of a packet: its family (4/6, 0 when not IP) and L4 protocol. */
struct zm_l3 {
	__u8 family;
	__u8 protocol;
};

/* Parses the Ethernet and IP headers of skb; -EINVAL for a runt or a non-IP frame. */
static __always_inline int zm_parse_l3(struct __sk_buff *skb, struct zm_l3 *out)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return -EINVAL;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip4 = (void *)(eth + 1);

		if ((void *)(ip4 + 1) > data_end)
			return -EINVAL;
		out->family = 4;
		out->protocol = ip4->protocol;
		return 0;
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return -EINVAL;
		out->family = 6;
		out->protocol = ip6->nexthdr;
		return 0;
	}
	return -EINVAL;
}

#endif
