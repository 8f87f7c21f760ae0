// Frame builder for BPF_PROG_TEST_RUN (see include/zmesh/packet.h).
#include "zmesh/packet.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <netinet/in.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace zmesh::packet {
namespace {

template <typename T>
void append(std::vector<uint8_t>& out, const T& header) {
  auto bytes = reinterpret_cast<const uint8_t*>(&header);
  out.insert(out.end(), bytes, bytes + sizeof header);
}

size_t l4_size(uint8_t protocol) {
  if (protocol == IPPROTO_TCP) return sizeof(tcphdr);
  if (protocol == IPPROTO_UDP) return sizeof(udphdr);
  return 0;
}

void append_l4(std::vector<uint8_t>& out, const Spec& spec) {
  if (spec.protocol == IPPROTO_TCP) {
    tcphdr tcp{};
    tcp.source = htons(spec.src_port);
    tcp.dest = htons(spec.dst_port);
    tcp.seq = htonl(spec.tcp_seq);
    tcp.doff = sizeof(tcphdr) / 4;
    reinterpret_cast<uint8_t*>(&tcp)[13] = spec.tcp_flags;
    tcp.window = htons(65535);
    append(out, tcp);
  } else if (spec.protocol == IPPROTO_UDP) {
    udphdr udp{};
    udp.source = htons(spec.src_port);
    udp.dest = htons(spec.dst_port);
    udp.len = htons(static_cast<uint16_t>(sizeof(udphdr) + spec.payload));
    append(out, udp);
  }
  out.resize(out.size() + spec.payload, 0);
}

}  // namespace

// The Internet checksum (RFC 1071) of `bytes`, continuing `sum`.
uint32_t add_sum(uint32_t sum, const uint8_t* bytes, size_t n) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(bytes[i] << 8 | bytes[i + 1]);
  if (n % 2) sum += static_cast<uint32_t>(bytes[n - 1] << 8);
  return sum;
}
uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xffff);
}

std::vector<uint8_t> build(const Spec& spec) {
  std::vector<uint8_t> out;
  out.insert(out.end(), spec.dst_mac.begin(), spec.dst_mac.end());
  out.insert(out.end(), spec.src_mac.begin(), spec.src_mac.end());
  for (uint16_t tpid : spec.tags) {
    const uint8_t tag[4] = {static_cast<uint8_t>(tpid >> 8), static_cast<uint8_t>(tpid), 0, 0};  // VID 0
    out.insert(out.end(), tag, tag + 4);
  }
  const size_t l4_bytes = l4_size(spec.protocol) + spec.payload;
  auto ethertype = [&](uint16_t type) {
    out.push_back(static_cast<uint8_t>(type >> 8));
    out.push_back(static_cast<uint8_t>(type));
  };

  in_addr src4{}, dst4{};
  in6_addr src6{}, dst6{};
  uint32_t pseudo = 0;  // the L4 checksum's pseudo-header
  if (inet_pton(AF_INET, std::string(spec.src).c_str(), &src4) == 1 &&
      inet_pton(AF_INET, std::string(spec.dst).c_str(), &dst4) == 1) {
    ethertype(ETH_P_IP);
    iphdr ip{};
    ip.version = 4;
    ip.ihl = sizeof(iphdr) / 4;
    ip.tot_len = htons(static_cast<uint16_t>(sizeof(iphdr) + l4_bytes));
    ip.ttl = 64;
    ip.protocol = spec.protocol;
    ip.saddr = src4.s_addr;
    ip.daddr = dst4.s_addr;
    ip.check = htons(fold(add_sum(0, reinterpret_cast<const uint8_t*>(&ip), sizeof ip)));
    append(out, ip);
    pseudo = add_sum(add_sum(0, reinterpret_cast<const uint8_t*>(&src4), 4), reinterpret_cast<const uint8_t*>(&dst4), 4);
  } else if (inet_pton(AF_INET6, std::string(spec.src).c_str(), &src6) == 1 &&
             inet_pton(AF_INET6, std::string(spec.dst).c_str(), &dst6) == 1) {
    ethertype(ETH_P_IPV6);
    ipv6hdr ip{};
    ip.version = 6;
    ip.payload_len = htons(static_cast<uint16_t>(l4_bytes));
    ip.nexthdr = spec.protocol;
    ip.hop_limit = 64;
    ip.saddr = src6;
    ip.daddr = dst6;
    append(out, ip);
    pseudo = add_sum(add_sum(0, src6.s6_addr, 16), dst6.s6_addr, 16);
  } else {
    throw std::invalid_argument("packet: '" + std::string(spec.src) + "' -> '" + std::string(spec.dst) +
                                "' are not two addresses of one family");
  }
  const size_t l4 = out.size();
  append_l4(out, spec);
  if (spec.protocol == IPPROTO_TCP || spec.protocol == IPPROTO_UDP) {
    pseudo += spec.protocol + static_cast<uint32_t>(l4_bytes);
    const uint16_t sum = fold(add_sum(pseudo, out.data() + l4, out.size() - l4));
    const size_t at = l4 + (spec.protocol == IPPROTO_TCP ? 16 : 6);
    out[at] = static_cast<uint8_t>(sum >> 8);
    out[at + 1] = static_cast<uint8_t>(sum);
  }
  return out;
}

}  // namespace zmesh::packet
