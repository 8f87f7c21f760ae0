// Builds Ethernet frames for BPF_PROG_TEST_RUN: the start-up self-check and the BPF tests
// feed the kernel programs real packets made here.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

namespace zmesh::packet {

// An Ethernet + IPv4/IPv6 + TCP/UDP frame with `payload` bytes of zeros. Addresses are text
// ("10.244.1.2", "fd00::1"); the family follows from them. Checksums are right, so a frame
// sent on a real link is accepted by the receiving stack (the crafted-frame tests).
struct Spec {
  std::string_view src = "10.244.1.2";
  std::string_view dst = "10.244.2.2";
  uint8_t protocol = 6;  // IPPROTO_TCP
  uint16_t src_port = 40000;
  uint16_t dst_port = 80;
  uint8_t tcp_flags = 0x02;  // SYN
  size_t payload = 0;
  uint32_t tcp_seq = 1;
  // VLAN tags between the Ethernet header and IP, outermost first: each a TPID (0x8100
  // 802.1Q, 0x88A8 802.1ad) with a priority-only tag (VID 0).
  std::vector<uint16_t> tags{};
  std::array<uint8_t, 6> dst_mac{0x02, 0, 0, 0, 0, 0x02};
  std::array<uint8_t, 6> src_mac{0x02, 0, 0, 0, 0, 0x01};
};

std::vector<uint8_t> build(const Spec& spec);

}  // namespace zmesh::packet
