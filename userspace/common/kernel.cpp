// Reads kernel facts (see include/zmesh/kernel.h).
#include "zmesh/kernel.h"

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

namespace zmesh {

std::optional<std::filesystem::path> find_mount(std::string_view mounts_text, std::string_view fstype) {
  std::istringstream in{std::string(mounts_text)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string device, mount_point, type;
    if (fields >> device >> mount_point >> type && type == fstype) return mount_point;
  }
  return std::nullopt;
}

std::optional<std::filesystem::path> find_mount(std::string_view fstype) {
  std::ifstream in("/proc/mounts");
  std::stringstream text;
  text << in.rdbuf();
  return find_mount(text.str(), fstype);
}

std::pair<int, int> parse_kernel_version(std::string_view release) {
  int major = 0, minor = 0;
  std::istringstream in{std::string(release)};
  char dot = 0;
  if (!(in >> major >> dot >> minor) || dot != '.') return {0, 0};
  return {major, minor};
}

KernelFacts read_kernel_facts() {
  KernelFacts facts;
  utsname uts{};
  if (uname(&uts) == 0) facts.release = uts.release;
  facts.btf = access("/sys/kernel/btf/vmlinux", R_OK) == 0;
  facts.bpffs = find_mount("bpf");
  facts.cgroup2 = find_mount("cgroup2");
  facts.tcx = parse_kernel_version(facts.release) >= std::pair{6, 6};
  return facts;
}

bool bring_up_loopback() {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  bool ok = ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
  ifr.ifr_flags |= IFF_UP;
  ok = ok && ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
  close(fd);
  return ok;
}

}  // namespace zmesh
