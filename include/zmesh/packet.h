// Builds Ethernet frames for BPF_PROG_TEST_RUN: the start-up self-check and the BPF tests
// feed the kernel programs real packets made here.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace zmesh::packet {

// An Ethernet + IPv4/IPv6 + TCP/UDP frame with `payload` bytes of zeros. Addresses are text
// ("10.244.1.2", "fd00::1"); the family follows from them. Checksums are left zero: TC
// programs do not verify them.
struct Spec {
  std::string_view src = "10.244.1.2";
  std::string_view dst = "10.244.2.2";
  uint8_t protocol = 6;  // IPPROTO_TCP
  uint16_t src_port = 40000;
  uint16_t dst_port = 80;
  uint8_t tcp_flags = 0x02;  // SYN
  size_t payload = 0;
};

std::vector<uint8_t> build(const Spec& spec);

}  // namespace zmesh::packet
