/* Structs shared by the kernel programs and userspace: map keys and values, the config that
 * userspace sets in each program's rodata, and the counters. Fixed-width types only; the C++
 * side static_asserts their sizes (tests/unit/abi_test.cpp). */
#ifndef ZMESH_MAPS_H
#define ZMESH_MAPS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define ZM_AF_INET 4
#define ZM_AF_INET6 6

/* ZM_LAYOUT_TEST_VARIANT: tests/e2e/upgrade_test.cpp builds a second zmeshd with it, whose maps
 * have another layout (zm_workload one field longer, zm_dests half as large), to upgrade and
 * downgrade a node between two layouts. Never defined in a zmeshd that ships. */

/* Map capacities (max_entries), for the programs and for userspace's own limits. */
#ifdef ZM_LAYOUT_TEST_VARIANT
#define ZM_MAX_DESTS 32768
#else
#define ZM_MAX_DESTS 65536     /* zm_dests: pod IPs and service VIPs of the mesh */
#endif
#define ZM_MAX_DEST_CIDRS 64   /* zm_dest_cidrs: the cluster's pod CIDRs */
#define ZM_MAX_WORKLOADS 4096  /* zm_workloads: IPs of pods enrolled on this node */
#define ZM_MAX_CONNS 65536     /* zm_cookie_orig, zm_orig, zm_sockhash, zm_sc_tcponly: captured connections */
#define ZM_MAX_DENY 16384      /* zm_l4_deny: kernel deny entries */
#define ZM_MAX_FAST 65536      /* zm_fast_verdicts, zm_fast_conns: the same-node fast path */
#define ZM_FAST_EVENTS_BYTES (256 * 1024) /* zm_fast_events: its ring buffer */

/* Every map the programs pin under the pin root, by the name bpf/lib/maps.h declares it with
 * (LIBBPF_PIN_BY_NAME): userspace opens them by these names only (ZM_MAP_NAMES in
 * userspace/datapath/map_names.h), and tests/bpf checks that the pins are exactly this list. */
#define ZM_PINNED_MAPS(X) \
	X(zm_dests)       \
	X(zm_dest_cidrs)  \
	X(zm_workloads)   \
	X(zm_cookie_orig) \
	X(zm_orig)        \
	X(zm_sockhash)    \
	X(zm_sc_tcponly)  \
	X(zm_l4_deny)     \
	X(zm_layout)      \
	X(zm_counters)    \
	X(zm_fast_state)  \
	X(zm_fast_verdicts) \
	X(zm_fast_conns)  \
	X(zm_fast_events)

/* The version of the pinned maps' layout, recorded in zm_layout by the daemon that pinned them
 * (bpftool map dump pinned <root>/zm_layout). Bump it when a map's key, value, type or
 * capacity changes; a new zmeshd finds the changed maps on its own either way (it compares
 * each pinned map with its own declaration, docs/datapath.md "Upgrades"). */
#define ZM_LAYOUT_VERSION 3
struct zm_layout {
	__u32 version;
};

/* An IPv4 or IPv6 address in network byte order; IPv4 uses v4 and leaves the rest zero. */
union zm_ip {
	__be32 v4;
	__be32 v6[4];
};

/* An address with its family (ZM_AF_INET/ZM_AF_INET6). IPv4-mapped IPv6 is stored as IPv4. */
struct zm_ip_key {
	__u8 family;
	__u8 pad[3];
	union zm_ip addr;
};

/* A TCP connection as one socket sees it: local and remote end, ports in network order. */
struct zm_tuple {
	union zm_ip local;
	union zm_ip remote;
	__be16 local_port;
	__be16 remote_port;
	__u8 family;
	__u8 pad[3];
};

/* Where a captured connect was going before it was rewritten to the proxy; or, with
 * ZM_ORIG_FAST, a connect the fast path let go to the pod directly (sockops moves those to
 * zm_fast_conns). */
#define ZM_ORIG_FROM_NODE 1 /* the connect came from the node's own netns, not from a pod */
#define ZM_ORIG_FAST 2      /* not redirected: a cached ALLOW of the generation below */
struct zm_orig {
	union zm_ip addr;
	__be16 port;
	__u8 family;
	__u8 flags; /* ZM_ORIG_* */
	__u32 pad;
	__u64 netns_cookie; /* the connecting socket's netns: which pod (the fast path's key) */
	__u64 generation;   /* ZM_ORIG_FAST: the generation of the verdict that let it go */
};

/* zm_dests value: a destination in the mesh, whose connects are captured. */
enum zm_dest_kind {
	ZM_DEST_WORKLOAD = 1, /* a pod IP */
	ZM_DEST_SERVICE = 2,  /* a service VIP */
	ZM_DEST_POD_CIDR = 3, /* inside a pod CIDR (zm_dest_cidrs) */
};
struct zm_dest {
	__u32 kind; /* enum zm_dest_kind */
};

/* zm_dest_cidrs key (LPM trie): a whole range of mesh destinations, the cluster's pod CIDRs,
 * whose pods other nodes enroll through their CNI plugin without this node's config naming
 * them. The data is a zm_ip_key; prefixlen = ZM_CIDR_FAMILY_BITS (family and pad, compared
 * whole) + the CIDR's length. Value: struct zm_dest (kind ZM_DEST_POD_CIDR). */
struct zm_cidr_key {
	__u32 prefixlen;
	struct zm_ip_key ip;
};
#define ZM_CIDR_FAMILY_BITS 32

/* zm_workloads value: a pod enrolled on this node. */
#define ZM_WL_MTLS_STRICT 1 /* plaintext inbound is dropped, not sent to the plaintext port */
struct zm_workload {
	__u32 flags;
	__u32 ifindex; /* host-side veth in the node netns; 0 when unknown */
	__u64 cgroup_id;
#ifdef ZM_LAYOUT_TEST_VARIANT
	__u64 test_variant_field; /* see ZM_LAYOUT_TEST_VARIANT below */
#endif
};

/* zm_l4_deny key (LPM trie): exact destination, port (0 = any) and protocol, then the source
 * prefix. prefixlen = ZM_DENY_EXACT_BITS + source prefix length. */
struct zm_deny_key {
	__u32 prefixlen;
	union zm_ip dst;
	__be16 dport;
	__u8 protocol;
	__u8 family;
	union zm_ip src;
};
#define ZM_DENY_EXACT_BITS ((16 + 2 + 1 + 1) * 8)

/* zm_l4_deny value: which rule denied, for the operator. */
struct zm_deny {
	__u32 rule_id;
};

/* The same-node fast path (docs/datapath.md "The fast path"). zmeshd caches its ALLOW for a
 * (source pod, destination pod, port) in zm_fast_verdicts, stamped with the generation in
 * zm_fast_state; every change of policies, workloads or identities bumps the generation, which
 * voids every verdict at once. DENY is never cached. */
struct zm_fast_state {
	__u64 generation;
};
/* zm_fast_verdicts key: the source pod (its netns cookie, which no other netns has and is
 * never reused), the destination pod's address and port (network order). */
struct zm_fast_key {
	__u64 netns_cookie;
	struct zm_ip_key dst;
	__be16 dport;
	__u8 pad[2];
};
struct zm_fast_verdict {
	__u64 generation;
};
/* zm_fast_conns value, under the client socket's tuple (local = client pod): an open fast-path
 * connection, for tc to let its SYN into the destination pod and for zmeshd to decide again
 * when the generation changes (the generation it was last allowed under). */
struct zm_fast_conn {
	__u64 netns_cookie;
	__u64 generation;
	__u64 start_ns; /* bpf_ktime_get_ns() at connect */
	__u8 established;
	__u8 fin_sent;     /* our FIN was acknowledged: bytes_acked counts it, it is no data */
	__u8 fin_received; /* the peer's FIN arrived: bytes_received counts it */
	__u8 revoked;      /* zmeshd decided it is denied now: tc drops its packets both ways */
	__u8 pad[4];
};
/* zm_fast_events record: a fast-path connection opened, or closed with its byte counts. */
enum zm_fast_event_kind { ZM_FAST_OPENED = 1, ZM_FAST_CLOSED = 2 };
struct zm_fast_event {
	struct zm_tuple tuple; /* the client socket's: local = client pod, remote = server pod */
	__u32 kind;            /* enum zm_fast_event_kind */
	__u32 established;     /* CLOSED: whether it ever was (else the connect failed) */
	__u64 bytes_sent;      /* client -> server, acknowledged data (not the SYN and FIN) */
	__u64 bytes_received;  /* server -> client, data (not the FIN) */
	__u64 duration_ns;
};

/* Config every program reads from its rodata; userspace fills it before load. */
struct zm_config {
	union zm_ip outbound_ip4;  /* proxy address the pods reach (v4 field used) */
	union zm_ip outbound_ip6;  /* same for IPv6 */
	__u16 outbound_port;       /* host order: 15001 */
	__u16 inbound_hbone_port;  /* 15008 */
	__u16 inbound_plain_port;  /* 15006 */
	__u16 pad;
	__u32 proxy_mark;          /* SO_MARK of zmeshd's own sockets: never captured */
	__u32 assign_mark;         /* skb->mark for steered packets: routed to the local table */
	__u32 sockmap_enabled;     /* the pod<->proxy short-cut through the sockhash */
	__u32 fast_path_enabled;   /* same-node connects with a cached ALLOW go to the pod directly */
	__u64 node_netns_cookie;   /* the node's netns: the host hooks act on its sockets only */
	__u64 proxy_cgroup_id;     /* zmeshd's own cgroup: its connects are never captured */
	__u64 probe_cgroup_id;     /* the kubelet's cgroup (0 = none): its probes reach pods directly */
	__u32 probe_cgroup_level;  /* its depth below the cgroup v2 root (ancestor-id lookups) */
	__u32 pad2;
};

/* zm_counters value (one per-CPU entry): what the programs did. Userspace sums the CPUs.
 * One list, ZM_COUNTERS(X): the struct below, the names in /metrics and /stats and their help
 * are all made from it, so a counter cannot exist on one side only. */
#define ZM_COUNTERS(X)                                                                                    \
	X(connect_redirected, "connects rewritten to the proxy")                                         \
	X(connect_passed, "connects to non-mesh destinations, untouched")                                \
	X(connect_orig_full, "a redirect whose original destination could not be stored: refused")       \
	X(connect_from_node, "of the redirected connects, those from the node's own netns (no identity)") \
	X(sockops_orig_moved, "cookie->orig entries moved to the tuple key")                             \
	X(sockhash_added, "sockets put into the short-cut")                                              \
	X(sockhash_add_failed, "sockhash full or insert refused")                                        \
	X(shortcut_msgs, "messages carried by the short-cut")                                            \
	X(shortcut_bytes, "bytes carried by the short-cut")                                              \
	X(shortcut_passed, "messages that took the TCP path (no peer in the sockhash)")                  \
	X(tc_to_hbone, "new inbound connections for the HBONE listener")                                 \
	X(tc_to_plaintext, "new inbound connections for the plaintext listener")                         \
	X(tc_followed, "packets of steered connections, delivered to their socket")                      \
	X(tc_reply_to_proxy, "pods' answers to connections zmeshd opened from the client's address: kept on the node") \
	X(tc_passed, "packets not for a mesh pod, or not ours to steer")                                 \
	X(tc_drop_deny, "dropped by zm_l4_deny")                                                         \
	X(tc_drop_mtls, "plaintext to a pod that requires mTLS")                                         \
	X(tc_drop_no_proxy, "of the steered, no listener to steer to (zmeshd down): fail closed")        \
	X(tc_drop_assign, "of the steered, bpf_sk_assign refused: dropped")                             \
	X(tc_drop_unparsed, "to a mesh pod with an unreadable L4 header, or a frame too deep in tags to read") \
	X(tc_drop_tagged, "to a mesh pod inside stacked VLAN tags (the kernel would strip them after tc)") \
	X(tc_door_passed, "TCP into a pod at its veth: zmeshd's own, or not a new connection")           \
	X(tc_door_probe, "new connections into a pod from the kubelet's probe cgroup, let through")      \
	X(tc_drop_bypass, "new connections into a pod that did not come through zmeshd: dropped at its veth") \
	X(connect_fast, "same-node connects with a cached ALLOW, sent to the pod directly (fast path)")  \
	X(fast_conn_full, "fast-path connects whose connection could not be recorded (map full): their SYN is dropped") \
	X(fast_events_lost, "fast-path open/close events the ring buffer had no room for")             \
	X(tc_fast_path, "new fast-path connections let through tc ingress (no proxy hop)")              \
	X(tc_door_fast, "new fast-path connections let into a pod at its veth")                         \
	X(fast_stale, "fast-path connects whose verdict's generation changed before their SYN: not recorded, their SYN is decided as plaintext") \
	X(tc_drop_revoked, "packets of fast-path connections zmeshd revoked (a policy now denies them): dropped")

struct zm_counters {
#define ZM_COUNTER_FIELD(name, help) __u64 name;
	ZM_COUNTERS(ZM_COUNTER_FIELD)
#undef ZM_COUNTER_FIELD
};

#endif
