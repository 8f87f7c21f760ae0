#include "kernel_objects.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>
#include <fstream>

#include "zmesh/datapath_error.h"
#include "zmesh/kernel.h"

namespace zmesh::datapath {
namespace fs = std::filesystem;

namespace {

bool on_filesystem(const fs::path& path, long magic) {
  struct statfs st{};
  return statfs(path.c_str(), &st) == 0 && st.f_type == magic;
}

}  // namespace

void make_pin_root(const fs::path& root) {
  fs::path existing = root;
  while (!existing.empty() && !fs::exists(existing)) existing = existing.parent_path();
  if (!on_filesystem(existing, BPF_FS_MAGIC))
    throw DatapathError("pin root " + root.string() + " is not on bpffs (" + existing.string() +
                            " is not): mount -t bpf bpf /sys/fs/bpf",
                        ENOTSUP);
  std::error_code ec;
  fs::create_directories(root / "links", ec);
  if (ec) throw DatapathError("create pin root " + root.string(), ec.value());
}

fs::path own_cgroup() {
  const auto mount = find_mount("cgroup2");
  if (!mount) throw DatapathError("find this process's cgroup: cgroup v2 is not mounted", ENOENT);
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) return *mount / fs::path(line.substr(3)).relative_path();
  throw DatapathError("find this process's cgroup: no cgroup v2 line in /proc/self/cgroup", ENOENT);
}

Cgroup open_cgroup(const fs::path& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw DatapathError("open cgroup " + path.string(), errno);
  if (!on_filesystem(path, CGROUP2_SUPER_MAGIC)) {
    const auto mount = find_mount("cgroup2");
    throw DatapathError("cgroup " + path.string() + " is not a cgroup v2 directory (cgroup v2 is " +
                            (mount ? "mounted at " + mount->string() : std::string("not mounted")) + ")",
                        EINVAL);
  }
  struct stat st{};
  fstat(fd.get(), &st);
  return {std::move(fd), st.st_ino};
}

uint32_t cgroup_level(const fs::path& cgroup) {
  const auto mount = find_mount("cgroup2");
  if (!mount) throw DatapathError("cgroup v2 is not mounted", ENOENT);
  const fs::path relative = fs::weakly_canonical(cgroup).lexically_relative(fs::weakly_canonical(*mount));
  if (relative.empty() || *relative.begin() == "..")
    throw DatapathError("cgroup " + cgroup.string() + " is not below the cgroup v2 mount " + mount->string(), EINVAL);
  uint32_t level = 0;
  for (const auto& part : relative)
    if (part != ".") ++level;
  return level;
}

unsigned interface_index(const std::string& name) {
  unsigned index = if_nametoindex(name.c_str());
  if (index == 0) throw DatapathError("find interface " + name + " in this netns", errno ? errno : ENODEV);
  return index;
}

uint64_t netns_cookie() {
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  constexpr int kSoNetnsCookie = 71;  // SO_NETNS_COOKIE (Linux 5.14); glibc 2.36 lacks the name
  if (!fd || getsockopt(fd.get(), SOL_SOCKET, kSoNetnsCookie, &cookie, &len) != 0)
    throw DatapathError("read this network namespace's cookie (SO_NETNS_COOKIE, Linux >= 5.14)", errno);
  return cookie;
}

}  // namespace zmesh::datapath
