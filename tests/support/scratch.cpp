#include "scratch.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "lab.h"
#include "zmesh/kernel.h"

namespace zmesh::test {
namespace fs = std::filesystem;

ScratchCgroup::ScratchCgroup() {
  const auto mount = find_mount("cgroup2");
  if (!mount) throw std::runtime_error("no cgroup2 mount");
  path_ = *mount / ("zmesh-test-" + Lab::unique_name());
  fs::create_directories(path_);
}

ScratchCgroup::~ScratchCgroup() {
  // Children first (deepest paths sort last); programs attached to a cgroup go with it.
  std::error_code ec;
  std::vector<fs::path> dirs{path_};
  for (auto it = fs::recursive_directory_iterator(path_, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_directory()) dirs.push_back(it->path());
  std::sort(dirs.rbegin(), dirs.rend());
  for (const auto& dir : dirs) fs::remove(dir, ec);
}

fs::path ScratchCgroup::child(const std::string& name) const {
  fs::create_directories(path_ / name);
  return path_ / name;
}

ScratchPinRoot::ScratchPinRoot() : path_("/sys/fs/bpf/zmesh-test-" + Lab::unique_name()) {}

ScratchPinRoot::~ScratchPinRoot() {
  std::error_code ec;
  // Links pinned here still hold their hooks: detach them before unpinning.
  if (fs::is_directory(path_ / "links", ec))
    for (const auto& entry : fs::directory_iterator(path_ / "links", ec))
      if (bpf_link* link = bpf_link__open(entry.path().c_str())) {
        bpf_link__detach(link);
        bpf_link__destroy(link);
      }
  fs::remove_all(path_, ec);
}

}  // namespace zmesh::test
