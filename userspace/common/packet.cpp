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

std::vector<uint8_t> build(const Spec& spec) {
  std::vector<uint8_t> out;
  ethhdr eth{};
  std::memcpy(eth.h_dest, "\x02\x00\x00\x00\x00\x02", ETH_ALEN);
  std::memcpy(eth.h_source, "\x02\x00\x00\x00\x00\x01", ETH_ALEN);
  const size_t l4_bytes = l4_size(spec.protocol) + spec.payload;

  in_addr src4{}, dst4{};
  in6_addr src6{}, dst6{};
  if (inet_pton(AF_INET, std::string(spec.src).c_str(), &src4) == 1 &&
      inet_pton(AF_INET, std::string(spec.dst).c_str(), &dst4) == 1) {
    eth.h_proto = htons(ETH_P_IP);
    append(out, eth);
    iphdr ip{};
    ip.version = 4;
    ip.ihl = sizeof(iphdr) / 4;
    ip.tot_len = htons(static_cast<uint16_t>(sizeof(iphdr) + l4_bytes));
    ip.ttl = 64;
    ip.protocol = spec.protocol;
    ip.saddr = src4.s_addr;
    ip.daddr = dst4.s_addr;
    append(out, ip);
  } else if (inet_pton(AF_INET6, std::string(spec.src).c_str(), &src6) == 1 &&
             inet_pton(AF_INET6, std::string(spec.dst).c_str(), &dst6) == 1) {
    eth.h_proto = htons(ETH_P_IPV6);
    append(out, eth);
    ipv6hdr ip{};
    ip.version = 6;
    ip.payload_len = htons(static_cast<uint16_t>(l4_bytes));
    ip.nexthdr = spec.protocol;
    ip.hop_limit = 64;
    ip.saddr = src6;
    ip.daddr = dst6;
    append(out, ip);
  } else {
    throw std::invalid_argument("packet: '" + std::string(spec.src) + "' -> '" + std::string(spec.dst) +
                                "' are not two addresses of one family");
  }
  append_l4(out, spec);
  return out;
}

}  // namespace zmesh::packet
