/* The maps zmesh's programs share. Each program object declares them all; libbpf pins each
 * by name under the daemon's pin root and every later object reuses the pin, so they are
 * one map. Key, value and writer are given above each. */
#ifndef ZMESH_LIB_MAPS_H
#define ZMESH_LIB_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "zmesh_maps.h"

/* key: struct zm_ip_key (pod IP or service VIP); value: struct zm_dest. Written by userspace
 * (Datapath::add_destination); read by connect4/6 to decide what to capture. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZM_MAX_DESTS);
	__type(key, struct zm_ip_key);
	__type(value, struct zm_dest);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} zm_dests SEC(".maps");

/* key: struct zm_cidr_key (a pod CIDR, --pod-cidr); value: struct zm_dest. Written by
 * userspace (Datapath::set_destination_cidrs); read by connect4/6 when zm_dests has no entry. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, ZM_MAX_DEST_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct zm_cidr_key);
	__type(value, struct zm_dest);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} zm_dest_cidrs SEC(".maps");

/* key: struct zm_ip_key (an IP of a pod enrolled on this node); value: struct zm_workload.
 * Written by userspace (Datapath::enroll); read by tc_ingress and sockops. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZM_MAX_WORKLOADS);
	__type(key, struct zm_ip_key);
	__type(value, struct zm_workload);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} zm_workloads SEC(".maps");

/* key: socket cookie of a captured pod socket; value: struct zm_orig. Written by connect4/6;
 * moved to zm_orig by sockops once the connection has its ports. LRU: a connect that never
 * establishes leaves nothing for ever. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ZM_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct zm_orig);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} zm_cookie_orig SEC(".maps");

/* key: struct zm_tuple of the pod's socket (local = pod, remote = proxy); value: struct
 * zm_orig. Written by sockops; read and deleted by the proxy (Datapath::original_destination),
 * deleted by sockops when the pod's socket closes. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ZM_MAX_CONNS);
	__type(key, struct zm_tuple);
	__type(value, struct zm_orig);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} zm_orig SEC(".maps");

/* key: struct zm_tuple of a socket; value: the socket. Written by sockops (pod<->proxy pairs
 * on this node); sk_msg redirects each message to the peer's entry. Closed sockets leave by
 * themselves. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, ZM_MAX_CONNS);
	__type(key, struct zm_tuple);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} zm_sockhash SEC(".maps");

/* key: struct zm_deny_key (LPM on the source prefix); value: struct zm_deny. Written by
 * userspace (Datapath::set_deny_rules); read by tc_ingress. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, ZM_MAX_DENY);
	__type(key, struct zm_deny_key);
	__type(value, struct zm_deny);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} zm_l4_deny SEC(".maps");

/* key: 0; value: struct zm_layout. Written by userspace (BpfDatapath::commit_start) once its
 * programs run in every hook; read by operators (bpftool). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct zm_layout);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} zm_layout SEC(".maps");

/* key: 0; value: struct zm_counters per CPU. Written by every program; summed by userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct zm_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} zm_counters SEC(".maps");

/* key: 0; value: struct zm_fast_state (the fast path's generation). Written by userspace
 * (BpfDatapath::invalidate_fast_path); read by connect4/6 and sockops. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct zm_fast_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} zm_fast_state SEC(".maps");

/* key: struct zm_fast_key; value: struct zm_fast_verdict. Written by userspace (an ALLOW the
 * proxy decided); read by connect4/6. LRU: a verdict is only a cache. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ZM_MAX_FAST);
	__type(key, struct zm_fast_key);
	__type(value, struct zm_fast_verdict);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} zm_fast_verdicts SEC(".maps");

/* key: struct zm_tuple of the client pod's socket; value: struct zm_fast_conn. Written by
 * sockops (TCP_CONNECT) and deleted at close; read by tc ingress and the pod's door (the SYN)
 * and by userspace (decide again, close). Not LRU: an open connection is never forgotten (a
 * full map fails the connection closed, fast_conn_full). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZM_MAX_FAST);
	__type(key, struct zm_tuple);
	__type(value, struct zm_fast_conn);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} zm_fast_conns SEC(".maps");

/* struct zm_fast_event records, from sockops to userspace (telemetry of fast-path connections). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, ZM_FAST_EVENTS_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} zm_fast_events SEC(".maps");

/* Adds 1 (or n) to a counter: zm_count(connect_redirected). Per-CPU, so no atomics. */
#define zm_count_n(field, n)                                                   \
	do {                                                                   \
		__u32 __zero = 0;                                              \
		struct zm_counters *__c = bpf_map_lookup_elem(&zm_counters, &__zero); \
		if (__c)                                                       \
			__c->field += (n);                                     \
	} while (0)
#define zm_count(field) zm_count_n(field, 1)


/* Whether a new connection's SYN belongs to a fast-path connection: a client pod's socket
 * recorded in zm_fast_conns and not revoked, and the packet came out of that pod's own veth (a
 * packet from anywhere else claiming the tuple is not let through). */
static __always_inline bool zm_fast_syn(__u8 family, const union zm_ip *src, __be16 sport, const union zm_ip *dst,
					__be16 dport, __u32 ingress_ifindex)
{
	struct zm_ip_key source = { .family = family, .addr = *src };
	struct zm_tuple t = { .local = *src, .remote = *dst, .local_port = sport, .remote_port = dport, .family = family };
	struct zm_workload *from = bpf_map_lookup_elem(&zm_workloads, &source);
	struct zm_fast_conn *conn;

	if (!from || !from->ifindex || from->ifindex != ingress_ifindex)
		return false;
	conn = bpf_map_lookup_elem(&zm_fast_conns, &t);
	return conn && !conn->revoked;
}

/* Whether a packet between two pods of this node belongs to a fast-path connection zmeshd
 * revoked, in either direction: the client's socket is also destroyed, but the packets are
 * dropped whether or not that reached it. */
static __always_inline bool zm_fast_revoked(__u8 family, const union zm_ip *src, __be16 sport, const union zm_ip *dst,
					    __be16 dport)
{
	struct zm_tuple out = { .local = *src, .remote = *dst, .local_port = sport, .remote_port = dport, .family = family };
	struct zm_tuple back = { .local = *dst, .remote = *src, .local_port = dport, .remote_port = sport, .family = family };
	struct zm_fast_conn *conn = bpf_map_lookup_elem(&zm_fast_conns, &out);

	if (!conn)
		conn = bpf_map_lookup_elem(&zm_fast_conns, &back);
	return conn && conn->revoked;
}

#endif
