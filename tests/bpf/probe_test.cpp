// The BPF pipeline end to end: bpf/probe.bpf.c compiled by clang, turned into a skeleton by
// bpftool, loaded from C++ into this kernel, and run on real frames with BPF_PROG_TEST_RUN.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <filesystem>

#include "lab.h"
#include "zmesh/datapath_error.h"
#include "zmesh/packet.h"
#include "zmesh/probe.h"

namespace zmesh {
namespace {

class ProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "loading BPF programs needs root";
  }
};

struct Case {
  const char* description;
  std::vector<uint8_t> frame;
  uint8_t drop_protocol;
  int verdict;
  ProbeCounter counted;  // the one counter entry the frame must make
};

// Ethernet + ARP: 14 + 28 bytes, ethertype 0x0806.
std::vector<uint8_t> arp_frame() {
  std::vector<uint8_t> frame(42, 0);
  frame[12] = 0x08;
  frame[13] = 0x06;
  return frame;
}

std::vector<Case> cases() {
  using packet::build;
  return {
      {"TCP/IPv4 passes", build({.src = "10.244.1.2", .dst = "10.244.2.2", .protocol = IPPROTO_TCP}), 0,
       PipelineProbe::kVerdictPass, {4, IPPROTO_TCP, 1, 54, 0}},
      {"UDP/IPv6 with payload passes", build({.src = "fd00::2", .dst = "fd00::3", .protocol = IPPROTO_UDP, .payload = 10}),
       0, PipelineProbe::kVerdictPass, {6, IPPROTO_UDP, 1, 72, 0}},
      {"a non-IP (ARP) frame is counted as unparsed and passes", arp_frame(), 0, PipelineProbe::kVerdictPass,
       {0, 0, 1, 42, 0}},
      {"the drop knob drops its protocol", build({.src = "10.0.0.1", .dst = "10.0.0.2", .protocol = IPPROTO_UDP}),
       IPPROTO_UDP, PipelineProbe::kVerdictDrop, {4, IPPROTO_UDP, 1, 42, 1}},
      {"the drop knob leaves other protocols alone", build({.src = "10.0.0.1", .dst = "10.0.0.2", .protocol = IPPROTO_TCP}),
       IPPROTO_UDP, PipelineProbe::kVerdictPass, {4, IPPROTO_TCP, 1, 54, 0}},
  };
}

TEST_F(ProbeTest, VerdictAndCounterPerFrame) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.description);
    PipelineProbe probe({.drop_protocol = c.drop_protocol});
    EXPECT_EQ(probe.run(c.frame), c.verdict);
    auto counters = probe.counters();
    ASSERT_EQ(counters.size(), 1u);
    EXPECT_EQ(counters[0].family, c.counted.family);
    EXPECT_EQ(counters[0].protocol, c.counted.protocol);
    EXPECT_EQ(counters[0].packets, c.counted.packets);
    EXPECT_EQ(counters[0].bytes, c.counted.bytes);
    EXPECT_EQ(counters[0].dropped, c.counted.dropped);
  }
}

TEST_F(ProbeTest, CountersAccumulateAcrossFramesAndKeys) {
  PipelineProbe probe;
  auto tcp = packet::build({.protocol = IPPROTO_TCP});
  for (int i = 0; i < 3; ++i) probe.run(tcp);
  probe.run(packet::build({.src = "fd00::1", .dst = "fd00::2", .protocol = IPPROTO_TCP}));
  auto counters = probe.counters();
  ASSERT_EQ(counters.size(), 2u);
  EXPECT_EQ(counters[0].family, 4);
  EXPECT_EQ(counters[0].packets, 3u);
  EXPECT_EQ(counters[0].bytes, 3 * tcp.size());
  EXPECT_EQ(counters[1].family, 6);
  EXPECT_EQ(counters[1].packets, 1u);
}

// The map carries BTF, so stock bpftool prints its fields by name.
TEST_F(ProbeTest, PinnedMapDumpsWithFieldNames) {
  const std::filesystem::path dir = "/sys/fs/bpf/zmesh-test-" + test::Lab::unique_name();
  std::filesystem::create_directories(dir);
  struct RemoveDir {
    std::filesystem::path dir;
    ~RemoveDir() { std::filesystem::remove_all(dir); }
  } remove{dir};

  PipelineProbe probe;
  probe.run(packet::build({.protocol = IPPROTO_TCP}));
  probe.pin_counters(dir / "zm_probe_cnt");
  auto dump = test::run({"bpftool", "map", "dump", "pinned", (dir / "zm_probe_cnt").string()});
  ASSERT_EQ(dump.exit_code, 0) << dump.err;
  for (const char* field : {"\"family\": 4", "\"protocol\": 6", "\"packets\": 1", "\"dropped\": 0"})
    EXPECT_NE(dump.out.find(field), std::string::npos) << field << " not in:\n" << dump.out;
}

TEST_F(ProbeTest, PinningOutsideBpffsSaysWhatFailed) {
  PipelineProbe probe;
  try {
    probe.pin_counters("/proc/zmesh-not-bpffs/zm_probe_cnt");
    FAIL() << "pinning outside bpffs succeeded";
  } catch (const DatapathError& e) {
    EXPECT_NE(std::string(e.what()).find("pin map zm_probe_cnt at /proc/zmesh-not-bpffs/zm_probe_cnt"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace zmesh
