// Facts about the running kernel and its mounts that zmesh depends on, read without changing
// anything: where bpffs and cgroup v2 are mounted, whether BTF and tcx are there.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace zmesh {

// Mount point of the first filesystem of type `fstype` in a /proc/mounts-format text.
std::optional<std::filesystem::path> find_mount(std::string_view mounts_text, std::string_view fstype);

// Same, reading /proc/mounts. cgroup v2 is not always at /sys/fs/cgroup (e.g. .../unified).
std::optional<std::filesystem::path> find_mount(std::string_view fstype);

struct KernelFacts {
  std::string release;                          // uname -r
  bool btf = false;                             // /sys/kernel/btf/vmlinux readable
  std::optional<std::filesystem::path> bpffs;   // where bpffs is mounted, if anywhere
  std::optional<std::filesystem::path> cgroup2; // where cgroup v2 is mounted, if anywhere
  bool tcx = false;                             // tcx links (kernel >= 6.6)
};

KernelFacts read_kernel_facts();

// Sets lo up in the calling thread's netns (a new netns has it down). Returns false on failure.
bool bring_up_loopback();

// "6.18.44-fc" -> {6, 18}; {0, 0} when unparsable.
std::pair<int, int> parse_kernel_version(std::string_view release);

}  // namespace zmesh
