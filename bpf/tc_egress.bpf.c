// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The pod's door: TC egress (tcx link, or clsact) on each enrolled pod's host-side veth, in the
 * node's netns. Every packet into the pod crosses it last, whatever way it came, so it is
 * where "nothing reaches a meshed pod around the mesh" is enforced once for all paths.
 *
 * A new TCP connection into the pod (a SYN without ACK) passes only when it comes
 *   - from zmeshd's own sockets: skb->mark == proxy_mark (SO_MARK, which needs CAP_NET_ADMIN;
 *     no packet from a pod or another node carries a mark: the kernel clears it when a packet
 *     changes netns, and it is not on the wire)                       -> pass (tc_door_passed)
 *   - from a socket of the kubelet's cgroup (--probe-cgroup): health probes
 *                                                                      -> pass (tc_door_probe)
 *   - a fast-path connection from a pod of this node, out of that pod's own veth
 *     (zm_fast_conns: zmeshd allowed it, docs/datapath.md)             -> pass (tc_door_fast)
 * and is dropped otherwise (tc_drop_bypass): it did not go through the mesh's decision. That is
 * what the node's own processes outside the captured cgroup send, packets NATed on the node
 * (NodePort, hostPort) and whatever arrived on an interface before zmeshd hooked it.
 * Everything else passes: replies and segments of connections that were let in (a connection
 * needs its SYN), and non-TCP traffic (zmesh meshes TCP). A TCP header that cannot be read
 * (a fragment, an IPv6 extension header) is dropped: a SYN could hide there (tc_drop_unparsed). */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lib/config.h"
#include "lib/maps.h"
#include "lib/net.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Whether the packet's socket lives in the kubelet's cgroup (or below it). */
static __always_inline bool zm_from_probe_cgroup(struct __sk_buff *skb)
{
	return zm_cfg.probe_cgroup_id &&
	       bpf_skb_ancestor_cgroup_id(skb, (int)zm_cfg.probe_cgroup_level) == zm_cfg.probe_cgroup_id;
}

/* Whether the packet is addressed to an enrolled pod (a door hooked on a wrong interface by
 * mistake then stops nothing else). */
static __always_inline bool zm_to_workload(const struct zm_pkt *p)
{
	struct zm_ip_key dst = { .family = p->family, .addr = p->dst };

	return bpf_map_lookup_elem(&zm_workloads, &dst) != NULL;
}

/* TC egress on a pod's host veth, into the pod: see the comment at the top of this file. */
SEC("tc")
int zm_tc_egress(struct __sk_buff *skb)
{
	struct zm_pkt p = {};

	if (skb->mark == zm_cfg.proxy_mark) {
		zm_count(tc_door_passed);
		return TC_ACT_OK;
	}
	switch (zm_parse(skb, &p)) {
	case 0:
		break;
	case -E2BIG:
		zm_count(tc_drop_unparsed);
		return TC_ACT_SHOT;
	default: /* not IP */
		zm_count(tc_door_passed);
		return TC_ACT_OK;
	}
	if (!zm_is_tcp(&p)) {
		zm_count(tc_door_passed);
		return TC_ACT_OK;
	}
	if (!p.l4_ok || p.tags) {
		zm_count(tc_drop_unparsed);
		return TC_ACT_SHOT;
	}
	if ((p.tcp_flags & (ZM_TCP_SYN | ZM_TCP_ACK)) != ZM_TCP_SYN || !zm_to_workload(&p)) {
		zm_count(tc_door_passed);
		return TC_ACT_OK;
	}
	if (zm_from_probe_cgroup(skb)) {
		zm_count(tc_door_probe);
		return TC_ACT_OK;
	}
	if (zm_fast_syn(p.family, &p.src, p.sport, &p.dst, p.dport, skb->ingress_ifindex)) {
		zm_count(tc_door_fast);
		return TC_ACT_OK;
	}
	zm_count(tc_drop_bypass);
	return TC_ACT_SHOT;
}
