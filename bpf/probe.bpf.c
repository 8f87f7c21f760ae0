// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The pipeline probe: the smallest program that exercises the whole BPF path (clang, skeleton,
 * load from C++, maps with BTF). zmeshd runs packets through it with BPF_PROG_TEST_RUN at
 * start-up to prove the kernel accepts and runs zmesh's programs before it relies on them. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "lib/net.h"
#include "zmesh_probe.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Knob, set through the skeleton's rodata: IP protocol whose packets are dropped (0 = none). */
const volatile __u8 drop_protocol = 0;

/* key: struct zm_probe_key (family, protocol); value: struct zm_probe_count; written by zm_probe. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct zm_probe_key);
	__type(value, struct zm_probe_count);
} zm_probe_cnt SEC(".maps");

static __always_inline void zm_probe_count(const struct zm_probe_key *key, __u32 len, bool dropped)
{
	struct zm_probe_count *count = bpf_map_lookup_elem(&zm_probe_cnt, key);

	if (!count) {
		struct zm_probe_count zero = {};

		/* BPF_NOEXIST: a CPU that raced us here already made the entry; use theirs. */
		bpf_map_update_elem(&zm_probe_cnt, key, &zero, BPF_NOEXIST);
		count = bpf_map_lookup_elem(&zm_probe_cnt, key);
		if (!count)
			return;
	}
	__sync_fetch_and_add(&count->packets, 1);
	__sync_fetch_and_add(&count->bytes, len);
	if (dropped)
		__sync_fetch_and_add(&count->dropped, 1);
}

/* TC (either direction): counts packets by family and L4 protocol; drops drop_protocol. */
SEC("tc")
int zm_probe(struct __sk_buff *skb)
{
	struct zm_pkt pkt = {};
	struct zm_probe_key key = {};
	bool drop;

	if (zm_parse(skb, &pkt) == 0) {
		key.family = pkt.family;
		key.protocol = pkt.protocol;
	}
	drop = drop_protocol && key.family && key.protocol == drop_protocol;
	zm_probe_count(&key, skb->len, drop);
	return drop ? TC_ACT_SHOT : TC_ACT_OK;
}
