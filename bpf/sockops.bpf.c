// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Socket tracking and the same-node short-cut.
 * - zm_sockops on enrolled pods' cgroups and on zmeshd's own cgroup: when a captured pod socket
 *   is established, move its original destination from the cookie key to the tuple key the
 *   proxy looks up; put sockets whose peer is on this node (a local pod or the proxy) into
 *   zm_sockhash; forget the original destination when the pod socket closes.
 * - zm_sockops_node on the node's host cgroup: the same move for connects zm_connect4/6_node
 *   captured, for sockets of the node's own netns only (no short-cut for them).
 * - the fast path, on pods' sockets: a connect the connect hook let go directly (ZM_ORIG_FAST)
 *   is recorded under its tuple in zm_fast_conns before its SYN leaves (TCP_CONNECT), so
 *   tc lets that SYN into the destination pod; its opening and its close, with the bytes
 *   each way, go to zmeshd through zm_fast_events.
 * - sk_msg on zm_sockhash: a message sent on one socket of a pair goes straight into its
 *   peer's receive queue, skipping TCP/IP. A socket that has sent through TCP once keeps
 *   doing so, so the bytes of a stream can never overtake each other. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lib/addr.h"
#include "lib/config.h"
#include "lib/maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* key: struct zm_tuple of a socket that sent a message through TCP while in the sockhash;
 * value: unused. Written by sk_msg; deleted by sockops at close. Such a socket is never
 * short-cut afterwards (ordering). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ZM_MAX_CONNS);
	__type(key, struct zm_tuple);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} zm_sc_tcponly SEC(".maps");

static __always_inline void zm_tuple_from_sockops(struct bpf_sock_ops *skops, struct zm_tuple *t)
{
	__u32 local6[4] = { skops->local_ip6[0], skops->local_ip6[1], skops->local_ip6[2], skops->local_ip6[3] };
	__u32 remote6[4] = { skops->remote_ip6[0], skops->remote_ip6[1], skops->remote_ip6[2],
			     skops->remote_ip6[3] };

	t->family = zm_ip_from_sock(skops->family, skops->local_ip4, local6, &t->local);
	zm_ip_from_sock(skops->family, skops->remote_ip4, remote6, &t->remote);
	t->local_port = bpf_htons((__u16)skops->local_port); /* host order in sock_ops */
	t->remote_port = (__be16)(skops->remote_port >> 16); /* network order, upper half */
}

/* Whether the remote end is on this node: the proxy's address or an enrolled local pod. */
static __always_inline bool zm_peer_is_local(const struct zm_tuple *t)
{
	struct zm_ip_key remote = { .family = t->family, .addr = t->remote };

	return zm_is_proxy_ip(t->family, &t->remote) || bpf_map_lookup_elem(&zm_workloads, &remote) != NULL;
}

/* Moves a captured socket's original destination to its tuple; whether there was one. */
static __always_inline bool zm_move_orig(struct bpf_sock_ops *skops, const struct zm_tuple *t)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct zm_orig *orig = bpf_map_lookup_elem(&zm_cookie_orig, &cookie);
	struct zm_orig copy;

	if (!orig || (orig->flags & ZM_ORIG_FAST))
		return false;
	copy = *orig;
	bpf_map_update_elem(&zm_orig, t, &copy, BPF_ANY);
	bpf_map_delete_elem(&zm_cookie_orig, &cookie);
	zm_count(sockops_orig_moved);
	return true;
}

/* Close events, to forget this socket's state. */
static __always_inline void zm_watch_close(struct bpf_sock_ops *skops)
{
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
}

/* Sends a fast-path connection's event to zmeshd; counted when the ring buffer is full. */
static __always_inline void zm_fast_event(struct bpf_sock_ops *skops, const struct zm_tuple *t,
					  const struct zm_fast_conn *conn, __u32 kind)
{
	struct zm_fast_event *e = bpf_ringbuf_reserve(&zm_fast_events, sizeof(*e), 0);

	if (!e) {
		zm_count(fast_events_lost);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->tuple = *t;
	e->kind = kind;
	e->established = conn->established;
	if (kind == ZM_FAST_CLOSED) {
		/* The kernel's counts take in the SYN and FINs, which are sequence space, not data. */
		__u64 control = (conn->established ? 1 : 0) + conn->fin_sent;

		e->bytes_sent = skops->bytes_acked > control ? skops->bytes_acked - control : 0;
		e->bytes_received = skops->bytes_received > conn->fin_received ?
					    skops->bytes_received - conn->fin_received : 0;
	}
	e->duration_ns = bpf_ktime_get_ns() - conn->start_ns;
	bpf_ringbuf_submit(e, 0);
}

/* TCP_CONNECT, before the SYN: a connect the fast path let go directly becomes a recorded
 * connection (tc lets in the SYN of recorded ones only). */
static __always_inline void zm_fast_connect(struct bpf_sock_ops *skops)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct zm_orig *orig = bpf_map_lookup_elem(&zm_cookie_orig, &cookie);
	struct zm_fast_conn conn = {};
	struct zm_tuple t = {};

	struct zm_fast_state *state;
	__u32 zero = 0;

	if (!orig || !(orig->flags & ZM_ORIG_FAST))
		return;
	conn.netns_cookie = orig->netns_cookie;
	conn.generation = orig->generation;
	conn.start_ns = bpf_ktime_get_ns();
	bpf_map_delete_elem(&zm_cookie_orig, &cookie);
	zm_tuple_from_sockops(skops, &t);
	/* An entry of the same tuple can only be a closed socket's that sockops never saw close. */
	if (bpf_map_update_elem(&zm_fast_conns, &t, &conn, BPF_ANY)) {
		zm_count(fast_conn_full);
		return;
	}
	/* The verdict's generation must still be the current one now that the connection is
	 * recorded. zmeshd bumps the generation, then decides every recorded connection again: a
	 * connection recorded before the bump is in that sweep, one recorded after it is seen here
	 * (the connect may be long past, e.g. TCP Fast Open defers this to the first write). */
	state = bpf_map_lookup_elem(&zm_fast_state, &zero);
	if (!state || state->generation != conn.generation) {
		bpf_map_delete_elem(&zm_fast_conns, &t);
		zm_count(fast_stale);
		return;
	}
	zm_watch_close(skops);
}

static __always_inline void zm_established(struct bpf_sock_ops *skops)
{
	struct zm_fast_conn *fast;
	struct zm_tuple t = {};

	zm_tuple_from_sockops(skops, &t);
	fast = bpf_map_lookup_elem(&zm_fast_conns, &t);
	if (fast) {
		fast->established = 1;
		zm_fast_event(skops, &t, fast, ZM_FAST_OPENED);
		return;
	}
	zm_move_orig(skops, &t);
	zm_watch_close(skops);
	if (!zm_cfg.sockmap_enabled || !zm_peer_is_local(&t))
		return;
	if (bpf_sock_hash_update(skops, &zm_sockhash, &t, BPF_NOEXIST))
		zm_count(sockhash_add_failed);
	else
		zm_count(sockhash_added);
}

/* A fast-path connection's FINs, from its state changes (old state args[0], new args[1]): which
 * of bytes_acked and bytes_received are FINs. A socket leaves FIN_WAIT2 and CLOSING only for
 * TIME_WAIT (or a reset, which these counts then miss by one). */
static __always_inline void zm_fast_fins(struct zm_fast_conn *conn, __u32 from, __u32 to)
{
	if (to == BPF_TCP_CLOSE_WAIT || to == BPF_TCP_CLOSING || (to == BPF_TCP_CLOSE && from == BPF_TCP_FIN_WAIT2))
		conn->fin_received = 1;
	if ((from == BPF_TCP_FIN_WAIT1 && to == BPF_TCP_FIN_WAIT2) || (to == BPF_TCP_CLOSE && from == BPF_TCP_CLOSING) ||
	    (to == BPF_TCP_CLOSE && from == BPF_TCP_LAST_ACK))
		conn->fin_sent = 1;
}

static __always_inline void zm_closed(struct bpf_sock_ops *skops)
{
	struct zm_fast_conn *fast;
	struct zm_tuple t = {};

	zm_tuple_from_sockops(skops, &t);
	fast = bpf_map_lookup_elem(&zm_fast_conns, &t);
	if (fast) {
		zm_fast_event(skops, &t, fast, ZM_FAST_CLOSED);
		bpf_map_delete_elem(&zm_fast_conns, &t);
		return;
	}
	bpf_map_delete_elem(&zm_orig, &t);
	bpf_map_delete_elem(&zm_sc_tcponly, &t);
}

static __always_inline void zm_state_changed(struct bpf_sock_ops *skops)
{
	/* Both read once, up front: the verifier refuses a context field read at a computed offset,
	 * which is what clang makes of two reads of args[] on different paths. */
	__u32 from = skops->args[0];
	__u32 to = skops->args[1];
	struct zm_fast_conn *fast;
	struct zm_tuple t = {};

	barrier_var(from);
	barrier_var(to);
	zm_tuple_from_sockops(skops, &t);
	fast = bpf_map_lookup_elem(&zm_fast_conns, &t);
	if (fast)
		zm_fast_fins(fast, from, to);
	if (to == BPF_TCP_CLOSE)
		zm_closed(skops);
}

/* sockops, both directions: connection established and closed. */
SEC("sockops")
int zm_sockops(struct bpf_sock_ops *skops)
{
	if (skops->family != AF_INET && skops->family != AF_INET6)
		return 1;
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		zm_fast_connect(skops);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		zm_established(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		zm_state_changed(skops);
		break;
	}
	return 1;
}

/* sockops on the host cgroup: captured connects of the node's own processes. Every socket of
 * the host goes past here, so it does no more than one netns check for the others. */
SEC("sockops")
int zm_sockops_node(struct bpf_sock_ops *skops)
{
	struct zm_tuple t = {};

	if (skops->family != AF_INET && skops->family != AF_INET6)
		return 1;
	if (bpf_get_netns_cookie(skops) != zm_cfg.node_netns_cookie)
		return 1;
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		zm_tuple_from_sockops(skops, &t);
		if (zm_move_orig(skops, &t))
			zm_watch_close(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] == BPF_TCP_CLOSE)
			zm_closed(skops);
		break;
	}
	return 1;
}

/* sk_msg on zm_sockhash, egress of a tracked socket: hand the message to the peer socket. */
SEC("sk_msg")
int zm_sk_msg(struct sk_msg_md *msg)
{
	struct zm_tuple self = {}, peer = {};
	__u32 local6[4] = { msg->local_ip6[0], msg->local_ip6[1], msg->local_ip6[2], msg->local_ip6[3] };
	__u32 remote6[4] = { msg->remote_ip6[0], msg->remote_ip6[1], msg->remote_ip6[2], msg->remote_ip6[3] };
	__u64 len = msg->size;

	self.family = zm_ip_from_sock(msg->family, msg->local_ip4, local6, &self.local);
	zm_ip_from_sock(msg->family, msg->remote_ip4, remote6, &self.remote);
	self.local_port = bpf_htons((__u16)msg->local_port);
	self.remote_port = (__be16)(msg->remote_port >> 16);
	peer.family = self.family;
	peer.local = self.remote;
	peer.remote = self.local;
	peer.local_port = self.remote_port;
	peer.remote_port = self.local_port;

	if (!bpf_map_lookup_elem(&zm_sc_tcponly, &self) &&
	    bpf_msg_redirect_hash(msg, &zm_sockhash, &peer, BPF_F_INGRESS) == SK_PASS) {
		zm_count(shortcut_msgs);
		zm_count_n(shortcut_bytes, len);
		return SK_PASS;
	}
	/* No peer yet (or no longer): TCP carries this and every later message of the socket. */
	__u8 one = 1;
	bpf_map_update_elem(&zm_sc_tcponly, &self, &one, BPF_ANY);
	zm_count(shortcut_passed);
	return SK_PASS;
}
