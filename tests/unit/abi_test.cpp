// The structs bpf/zmesh_maps.h shares between the kernel programs and C++: one header, and
// their sizes pinned here, so a change that would make the two sides disagree (padding,
// a field added on one side of a hand-kept mirror) fails the build instead of the datapath.
#include <gtest/gtest.h>

#include <cstddef>

#include "zmesh/datapath.h"
#include "zmesh_maps.h"

static_assert(sizeof(union zm_ip) == 16);
static_assert(sizeof(struct zm_ip_key) == 20);
static_assert(sizeof(struct zm_tuple) == 40);
static_assert(offsetof(struct zm_tuple, local_port) == 32);
static_assert(sizeof(struct zm_orig) == 40);
static_assert(offsetof(struct zm_orig, netns_cookie) == 24);
static_assert(sizeof(struct zm_fast_key) == 32);
static_assert(offsetof(struct zm_fast_key, dport) == 28);
static_assert(sizeof(struct zm_fast_conn) == 32);
static_assert(sizeof(struct zm_fast_event) == 72);
static_assert(sizeof(struct zm_dest) == 4);
static_assert(sizeof(struct zm_cidr_key) == 4 + sizeof(struct zm_ip_key));
static_assert(ZM_CIDR_FAMILY_BITS == 8 * (sizeof(struct zm_ip_key) - sizeof(union zm_ip)));
static_assert(sizeof(struct zm_workload) == 16);
static_assert(sizeof(struct zm_deny_key) == 4 + ZM_DENY_EXACT_BITS / 8 + 16);
static_assert(offsetof(struct zm_deny_key, src) == 4 + ZM_DENY_EXACT_BITS / 8,
              "the source prefix must come right after the exact part for the LPM match");
static_assert(sizeof(struct zm_config) == 88);
static_assert(sizeof(struct zm_counters) % sizeof(__u64) == 0, "userspace sums the counters as __u64 words");

TEST(Abi, SharedStructsHaveTheSizesTheKernelSideUses) {
  // The static_asserts above are the test; this records that they compiled into this binary.
  EXPECT_EQ(sizeof(struct zm_counters) / sizeof(__u64), zmesh::kCounters.size()) << "each counter has a name";
}
