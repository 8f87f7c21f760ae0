// PipelineProbe: the kernel self-check. Loads bpf/probe.bpf.c through its skeleton and runs
// frames through it with BPF_PROG_TEST_RUN, which proves the kernel accepts and runs zmesh's
// programs (BTF, CO-RE, map creation, permissions) before the daemon relies on them.
// Owns the skeleton (and so every fd) for its lifetime; not thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

struct probe_bpf;

namespace zmesh {

struct ProbeCounter {
  uint8_t family = 0;    // 4, 6, or 0 for frames that did not parse as IP
  uint8_t protocol = 0;  // IPPROTO_*
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t dropped = 0;
};

class PipelineProbe {
 public:
  static constexpr int kVerdictPass = 0;  // TC_ACT_OK
  static constexpr int kVerdictDrop = 2;  // TC_ACT_SHOT

  struct Options {
    uint8_t drop_protocol = 0;  // frames of this L4 protocol are dropped; 0 = none
  };

  // Throws DatapathError when the kernel refuses the program or its map.
  explicit PipelineProbe(Options options);
  PipelineProbe() : PipelineProbe(Options{}) {}
  ~PipelineProbe();
  PipelineProbe(const PipelineProbe&) = delete;
  PipelineProbe& operator=(const PipelineProbe&) = delete;

  // Runs one frame through the program; returns its TC verdict.
  int run(std::span<const uint8_t> frame);

  // The counter map's entries, ordered by (family, protocol).
  std::vector<ProbeCounter> counters() const;

  // Pins the counter map at `path` (on bpffs) so that stock tools can read it. The pin
  // outlives this object; the caller removes it.
  void pin_counters(const std::filesystem::path& path);

 private:
  struct Destroy {
    void operator()(probe_bpf* skel) const;
  };
  std::unique_ptr<probe_bpf, Destroy> skel_;
};

}  // namespace zmesh
