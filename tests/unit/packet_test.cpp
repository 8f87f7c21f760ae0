// The frame builder that feeds BPF_PROG_TEST_RUN.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "zmesh/packet.h"

namespace zmesh::packet {
namespace {

TEST(PacketBuild, HeaderSizesAndFieldsPerFamilyAndProtocol) {
  struct Case {
    Spec spec;
    size_t size;
    uint16_t ethertype;
  } cases[] = {
      {{.src = "10.0.0.1", .dst = "10.0.0.2", .protocol = IPPROTO_TCP}, 14 + 20 + 20, 0x0800},
      {{.src = "10.0.0.1", .dst = "10.0.0.2", .protocol = IPPROTO_UDP, .payload = 100}, 14 + 20 + 8 + 100, 0x0800},
      {{.src = "fd00::1", .dst = "fd00::2", .protocol = IPPROTO_TCP, .payload = 5}, 14 + 40 + 20 + 5, 0x86DD},
      {{.src = "fd00::1", .dst = "fd00::2", .protocol = IPPROTO_ICMPV6}, 14 + 40, 0x86DD},
  };
  for (const auto& c : cases) {
    auto frame = build(c.spec);
    ASSERT_EQ(frame.size(), c.size) << c.spec.src;
    EXPECT_EQ(frame[12] << 8 | frame[13], c.ethertype);
    const size_t protocol_offset = c.ethertype == 0x0800 ? 14 + 9 : 14 + 6;
    EXPECT_EQ(frame[protocol_offset], c.spec.protocol);
  }
}

TEST(PacketBuild, TcpPortsAndFlagsInNetworkOrder) {
  auto frame = build({.src = "10.0.0.1", .dst = "10.0.0.2", .src_port = 40001, .dst_port = 15008, .tcp_flags = 0x12});
  const size_t tcp = 14 + 20;
  EXPECT_EQ(frame[tcp] << 8 | frame[tcp + 1], 40001);
  EXPECT_EQ(frame[tcp + 2] << 8 | frame[tcp + 3], 15008);
  EXPECT_EQ(frame[tcp + 13], 0x12);
}

TEST(PacketBuild, RejectsMixedOrBadAddresses) {
  EXPECT_THROW(build({.src = "10.0.0.1", .dst = "fd00::1"}), std::invalid_argument);
  EXPECT_THROW(build({.src = "not-an-ip", .dst = "10.0.0.1"}), std::invalid_argument);
}

}  // namespace
}  // namespace zmesh::packet
