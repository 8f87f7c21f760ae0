// The kernel objects the datapath hangs its programs on, found and checked with a clear error
// each: the pin root on bpffs, cgroup v2 directories, interfaces, this netns's cookie.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "fd.h"

namespace zmesh::datapath {

// Creates the pin root (and links/ in it) after checking that it lies on bpffs.
void make_pin_root(const std::filesystem::path& root);

struct Cgroup {
  UniqueFd fd;
  uint64_t id = 0;  // the directory's inode: bpf_get_current_cgroup_id() of its processes
};
// Throws DatapathError when the path is missing or not a cgroup v2 directory.
Cgroup open_cgroup(const std::filesystem::path& path);
// This process's cgroup v2 directory, from /proc/self/cgroup.
std::filesystem::path own_cgroup();
// How deep a cgroup lies below the cgroup v2 root (the root is 0), for the programs'
// ancestor-id lookups.
uint32_t cgroup_level(const std::filesystem::path& cgroup);

// Throws DatapathError (ENODEV) when there is no such interface in this netns.
unsigned interface_index(const std::string& name);
// The network namespace's cookie (SO_NETNS_COOKIE), as bpf_get_netns_cookie() sees it.
uint64_t netns_cookie();

}  // namespace zmesh::datapath
