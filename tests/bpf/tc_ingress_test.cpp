// zm_tc_ingress, table-driven through BPF_PROG_TEST_RUN: each row is a frame, the verdict the
// program must return, and the one counter it must move. The maps are provisioned through the
// real C++ API (BpfDatapath::enroll, set_deny_rules), in a private netns of the test's own
// that also holds the transparent listeners the program steers to.
//
//   private netns:  lo up; zmeshd-like listeners [::]:15008 and [::]:15006 (IP_TRANSPARENT)
//   enrolled:       W1 10.244.1.2 + fd00:244:1::2 (permissive), W2 10.244.1.3 (STRICT mTLS)
//   deny rules:     10.9.0.0/16 -> W1 any port;  10.8.0.5/32 -> W1 port 8080 (TCP);
//                   10.7.7.0/24 -> W1 port 53 (UDP)
//
// BPF_PROG_TEST_RUN does not run a program at tc ingress, so the kernel refuses bpf_sk_assign
// there (EOPNOTSUPP): a row that steers shows its decision counter and tc_drop_assign, after
// the listener lookup succeeded (without a listener it is tc_drop_no_proxy instead). The
// end-to-end tests (tests/e2e/datapath_test.cpp) show the real assignment.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>

#include "netns.h"
#include "scratch.h"
#include "zmesh/datapath.h"
#include "zmesh/datapath_error.h"
#include "zmesh/packet.h"

namespace zmesh {
namespace {

using boost::asio::ip::make_address;
using Field = __u64 zm_counters::*;

int transparent_listener(uint16_t port) {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int on = 1, off = 0;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  setsockopt(fd, SOL_IP, IP_TRANSPARENT, &on, sizeof on);
  setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &on, sizeof on);
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 16) != 0)
    throw std::runtime_error("listen on " + std::to_string(port) + ": " + std::strerror(errno));
  return fd;
}

class TcIngressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "loading BPF programs needs root";
    netns_ = std::make_unique<test::NetnsThread>();
    netns_->run([this] {
      DatapathOptions options;
      options.pin_root = pins_.path();
      options.outbound_ip4 = boost::asio::ip::make_address_v4("10.244.1.1");
      options.proxy_cgroup = cgroup_.child("proxy");
      datapath_ = BpfDatapath::start(options);
      datapath_->enroll({"w1", cgroup_.child("w1"), "", {make_address("10.244.1.2"), make_address("fd00:244:1::2")}, false});
      datapath_->enroll({"w2", cgroup_.child("w2"), "", {make_address("10.244.1.3")}, true});
      datapath_->set_deny_rules({
          {1, make_address("10.9.0.0"), 16, make_address("10.244.1.2"), 0, IPPROTO_TCP},
          {2, make_address("10.8.0.5"), 32, make_address("10.244.1.2"), 8080, IPPROTO_TCP},
          {3, make_address("10.7.7.0"), 24, make_address("10.244.1.2"), 53, IPPROTO_UDP},
      });
    });
  }

  void TearDown() override {
    if (netns_)
      netns_->run([this] {
        for (int fd : listeners_) close(fd);
        datapath_.reset();
      });
    netns_.reset();
  }

  void open_listeners() {
    netns_->run([this] {
      listeners_.push_back(transparent_listener(DatapathOptions::kInboundHbonePort));
      listeners_.push_back(transparent_listener(DatapathOptions::kInboundPlainPort));
    });
  }

  // Runs the frame; checks the verdict and that the counters in `moved` are the only ones that
  // moved, each by one.
  void expect(const packet::Spec& spec, int verdict, std::vector<Field> moved, const std::string& description) {
    SCOPED_TRACE(description);
    const auto frame = packet::build(spec);
    const zm_counters before = datapath_->counters();
    EXPECT_EQ(netns_->run([&] { return datapath_->test_run_tc_ingress(frame); }), verdict);
    const zm_counters after = datapath_->counters();
    const auto* b = reinterpret_cast<const __u64*>(&before);
    const auto* a = reinterpret_cast<const __u64*>(&after);
    std::set<size_t> moved_index;
    for (Field field : moved) moved_index.insert(static_cast<size_t>(&(after.*field) - a));
    for (size_t i = 0; i < sizeof(zm_counters) / sizeof(__u64); ++i)
      EXPECT_EQ(a[i] - b[i], moved_index.contains(i) ? 1u : 0u) << "counter #" << i;
  }

  test::ScratchCgroup cgroup_;
  test::ScratchPinRoot pins_;
  std::unique_ptr<test::NetnsThread> netns_;
  std::unique_ptr<BpfDatapath> datapath_;
  std::vector<int> listeners_;
};

constexpr int kPass = 0, kDrop = 2;
constexpr int kSteered = kDrop;  // the refused assign under BPF_PROG_TEST_RUN (see the top)
constexpr Field kAssign = &zm_counters::tc_drop_assign;
constexpr uint8_t kSyn = 0x02, kAck = 0x10;

TEST_F(TcIngressTest, VerdictAndCounterPerPacket) {
  open_listeners();
  struct Row {
    const char* description;
    packet::Spec spec;
    int verdict;
    std::vector<Field> counters;
  } rows[] = {
      {"not for a mesh pod: passes", {.src = "10.100.0.2", .dst = "10.244.9.9", .dst_port = 80}, kPass, {&zm_counters::tc_passed}},
      {"UDP to a mesh pod: passes", {.src = "10.100.0.2", .dst = "10.244.1.2", .protocol = IPPROTO_UDP, .dst_port = 53},
       kPass, {&zm_counters::tc_passed}},
      {"SYN to pod:15008: HBONE listener", {.src = "10.244.2.2", .dst = "10.244.1.2", .dst_port = 15008}, kSteered,
       {&zm_counters::tc_to_hbone, kAssign}},
      {"SYN to pod:8080 (permissive): plaintext listener", {.src = "10.244.2.2", .dst = "10.244.1.2", .dst_port = 8080},
       kSteered, {&zm_counters::tc_to_plaintext, kAssign}},
      {"SYN to pod:8080 (STRICT): dropped", {.src = "10.244.2.2", .dst = "10.244.1.3", .dst_port = 8080}, kDrop, {&zm_counters::tc_drop_mtls}},
      {"SYN to pod:15008 (STRICT): HBONE is fine", {.src = "10.244.2.2", .dst = "10.244.1.3", .dst_port = 15008}, kSteered,
       {&zm_counters::tc_to_hbone, kAssign}},
      {"source in a denied /16, any port: dropped", {.src = "10.9.3.4", .dst = "10.244.1.2", .dst_port = 443}, kDrop, {&zm_counters::tc_drop_deny}},
      {"denied /16 does not apply to HBONE (a node's address; the proxy decides)",
       {.src = "10.9.3.4", .dst = "10.244.1.2", .dst_port = 15008}, kSteered, {&zm_counters::tc_to_hbone, kAssign}},
      {"denied /16, not a SYN (a reply to the pod's own connection): passes",
       {.src = "10.9.3.4", .dst = "10.244.1.2", .src_port = 443, .dst_port = 40000, .tcp_flags = kSyn | kAck}, kPass,
       {&zm_counters::tc_passed}},
      {"UDP from a source denied for TCP only: passes",
       {.src = "10.9.3.4", .dst = "10.244.1.2", .protocol = IPPROTO_UDP, .dst_port = 53}, kPass, {&zm_counters::tc_passed}},
      {"UDP denied on its port: dropped", {.src = "10.7.7.9", .dst = "10.244.1.2", .protocol = IPPROTO_UDP, .dst_port = 53},
       kDrop, {&zm_counters::tc_drop_deny}},
      {"denied /32 on its port: dropped", {.src = "10.8.0.5", .dst = "10.244.1.2", .dst_port = 8080}, kDrop, {&zm_counters::tc_drop_deny}},
      {"denied /32 on another port: plaintext listener", {.src = "10.8.0.5", .dst = "10.244.1.2", .dst_port = 8081},
       kSteered, {&zm_counters::tc_to_plaintext, kAssign}},
      {"non-SYN without a socket (a reply to the pod's own connection): passes",
       {.src = "10.244.2.2", .dst = "10.244.1.2", .src_port = 80, .dst_port = 40000, .tcp_flags = kSyn | kAck}, kPass, {&zm_counters::tc_passed}},
      {"IPv6 SYN to pod:15008: HBONE listener", {.src = "fd00:244:2::2", .dst = "fd00:244:1::2", .dst_port = 15008},
       kSteered, {&zm_counters::tc_to_hbone, kAssign}},
      {"IPv6 SYN to pod:9090: plaintext listener", {.src = "fd00:244:2::2", .dst = "fd00:244:1::2", .dst_port = 9090},
       kSteered, {&zm_counters::tc_to_plaintext, kAssign}},
  };
  for (const auto& row : rows) expect(row.spec, row.verdict, row.counters, row.description);
}

// Frames whose TCP header cannot be read must not pass to a mesh pod: a SYN could hide there.
TEST_F(TcIngressTest, UnreadableL4ToAMeshPodIsDropped) {
  open_listeners();
  auto run = [&](std::vector<uint8_t> frame, const char* description) {
    SCOPED_TRACE(description);
    const zm_counters before = datapath_->counters();
    EXPECT_EQ(netns_->run([&] { return datapath_->test_run_tc_ingress(frame); }), kDrop);
    EXPECT_EQ(datapath_->counters().tc_drop_unparsed - before.tc_drop_unparsed, 1u);
  };
  // IPv6 with a hop-by-hop header (next header 0) in front of whatever follows.
  run(packet::build({.src = "fd00:244:2::2", .dst = "fd00:244:1::2", .protocol = 0, .payload = 48}),
      "IPv6 extension header");
  // IPv4 first fragment (MF set).
  auto fragment = packet::build({.src = "10.244.2.2", .dst = "10.244.1.2", .dst_port = 8080});
  fragment[14 + 6] |= 0x20;
  run(fragment, "IPv4 fragment");
  // A TCP header cut short.
  auto runt = packet::build({.src = "10.244.2.2", .dst = "10.244.1.3", .dst_port = 8080});
  runt.resize(14 + 20 + 10);
  run(runt, "truncated TCP header");
}

TEST_F(TcIngressTest, NoListenerFailsClosed) {
  // zmeshd down: new inbound connections to mesh pods are dropped, never delivered around it.
  expect({.src = "10.244.2.2", .dst = "10.244.1.2", .dst_port = 15008}, kDrop,
         {&zm_counters::tc_to_hbone, &zm_counters::tc_drop_no_proxy}, "HBONE with no listener");
  expect({.src = "10.244.2.2", .dst = "10.244.1.2", .dst_port = 8080}, kDrop,
         {&zm_counters::tc_to_plaintext, &zm_counters::tc_drop_no_proxy}, "plaintext with no listener");
}

TEST_F(TcIngressTest, SetDenyRulesReplacesTheWholeSet) {
  PinnedMaps maps(pins_.path());
  EXPECT_EQ(maps.deny_rule_count(), 3u);
  datapath_->set_deny_rules({{3, make_address("10.7.0.0"), 24, make_address("10.244.1.3"), 0, IPPROTO_TCP}});
  EXPECT_EQ(maps.deny_rule_count(), 1u);
  open_listeners();
  expect({.src = "10.9.3.4", .dst = "10.244.1.2", .dst_port = 443}, kSteered, {&zm_counters::tc_to_plaintext, kAssign},
         "the removed /16 rule no longer drops");
  expect({.src = "10.7.0.99", .dst = "10.244.1.3", .dst_port = 8080}, kDrop, {&zm_counters::tc_drop_deny},
         "the new rule drops");
  datapath_->set_deny_rules({});
  EXPECT_EQ(maps.deny_rule_count(), 0u);
}

TEST_F(TcIngressTest, BadDenyRulesAreRejectedWithTheReason) {
  try {
    datapath_->set_deny_rules({{7, make_address("fd00::1"), 64, make_address("10.244.1.2"), 0, IPPROTO_TCP}});
    FAIL() << "a rule mixing families was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("deny rule 7"), std::string::npos) << e.what();
  }
  EXPECT_THROW(datapath_->set_deny_rules({{8, make_address("10.0.0.0"), 33, make_address("10.244.1.2"), 0, 6}}),
               std::invalid_argument);
  EXPECT_EQ(PinnedMaps(pins_.path()).deny_rule_count(), 3u) << "a rejected set must leave the old rules in place";
}

TEST_F(TcIngressTest, AFullDestinationMapIsAClearErrorAndKeepsWhatIsThere) {
  // Fill zm_dests (65536) with 10.200.x.y addresses, then one more.
  uint32_t added = 0;
  try {
    for (uint32_t i = 0; i < 70000; ++i, ++added)
      datapath_->add_destination(boost::asio::ip::address_v4(0x0ac80000u + i), DestinationKind::Workload);
    FAIL() << "70000 destinations fit in a 65536-entry map";
  } catch (const DatapathError& e) {
    EXPECT_NE(std::string(e.what()).find("map zm_dests is full (65536 entries)"), std::string::npos) << e.what();
  }
  EXPECT_EQ(added, 65536u);
  EXPECT_EQ(PinnedMaps(pins_.path()).destinations().size(), 65536u) << "nothing already there was lost";
}

}  // namespace
}  // namespace zmesh
