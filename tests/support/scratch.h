// Scratch kernel objects for tests that do not need a whole lab: a cgroup v2 directory and a
// bpffs pin root, both under names unique to the test process, removed when the object goes
// (also when the test fails).
#pragma once

#include <filesystem>
#include <string>

namespace zmesh::test {

class ScratchCgroup {
 public:
  ScratchCgroup();  // <cgroup2>/zmesh-test-<unique>
  ~ScratchCgroup();
  ScratchCgroup(const ScratchCgroup&) = delete;
  ScratchCgroup& operator=(const ScratchCgroup&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path child(const std::string& name) const;  // made on first use

 private:
  std::filesystem::path path_;
};

class ScratchPinRoot {
 public:
  ScratchPinRoot();  // /sys/fs/bpf/zmesh-test-<unique>
  ~ScratchPinRoot();
  ScratchPinRoot(const ScratchPinRoot&) = delete;
  ScratchPinRoot& operator=(const ScratchPinRoot&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace zmesh::test
