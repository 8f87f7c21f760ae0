// Kernel facts parsed from /proc/mounts text and uname releases.
#include <gtest/gtest.h>

#include "zmesh/kernel.h"

namespace zmesh {
namespace {

constexpr const char* kMounts =
    "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n"
    "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n"
    "bpf /sys/fs/bpf bpf rw,relatime 0 0\n";

TEST(FindMount, FindsEachTypeByFilesystemTypeNotByPath) {
  struct Case {
    const char* type;
    std::optional<std::filesystem::path> expected;
  } cases[] = {
      {"cgroup2", "/sys/fs/cgroup/unified"},  // not /sys/fs/cgroup, which is v1 here
      {"bpf", "/sys/fs/bpf"},
      {"cgroup", "/sys/fs/cgroup/cpu"},
      {"debugfs", std::nullopt},
  };
  for (const auto& c : cases) EXPECT_EQ(find_mount(kMounts, c.type), c.expected) << c.type;
}

TEST(FindMount, EmptyOrGarbageTextFindsNothing) {
  EXPECT_EQ(find_mount("", "bpf"), std::nullopt);
  EXPECT_EQ(find_mount("bpf\n\n", "bpf"), std::nullopt);
}

TEST(ParseKernelVersion, ReadsMajorAndMinor) {
  EXPECT_EQ(parse_kernel_version("6.18.44-fc-v669"), std::pair(6, 18));
  EXPECT_EQ(parse_kernel_version("5.15.0-91-generic"), std::pair(5, 15));
  EXPECT_EQ(parse_kernel_version("6.6"), std::pair(6, 6));
  EXPECT_EQ(parse_kernel_version("garbage"), std::pair(0, 0));
  EXPECT_EQ(parse_kernel_version(""), std::pair(0, 0));
}

TEST(KernelFacts, ThisMachineHasWhatZmeshNeeds) {
  const KernelFacts facts = read_kernel_facts();
  EXPECT_FALSE(facts.release.empty());
  EXPECT_TRUE(facts.btf) << "zmesh needs /sys/kernel/btf/vmlinux";
  EXPECT_TRUE(facts.cgroup2.has_value()) << "no cgroup2 mount in /proc/mounts";
}

}  // namespace
}  // namespace zmesh
