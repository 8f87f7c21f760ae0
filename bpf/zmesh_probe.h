/* Structs shared by bpf/probe.bpf.c and userspace: the pipeline probe's counter map. */
#ifndef ZMESH_PROBE_H
#define ZMESH_PROBE_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Key of zm_probe_cnt: what kind of packet was seen. family/protocol 0 = could not parse. */
struct zm_probe_key {
	__u8 family;   /* 4 or 6 */
	__u8 protocol; /* IPPROTO_* of the L4 header */
	__u16 pad;
};

/* Value of zm_probe_cnt. */
struct zm_probe_count {
	__u64 packets;
	__u64 bytes;
	__u64 dropped;
};

#endif
