// zm_tc_ingress and zm_tc_egress (the pod's door), table-driven through BPF_PROG_TEST_RUN:
// each row is a frame, the verdict the program must return, and the counters it must move.
// The maps are provisioned through the real C++ API (BpfDatapath::enroll, set_deny_rules), in
// a private netns of the test's own that also holds the transparent listeners the program
// steers to.
//
//   private netns:  lo up; zmeshd-like listeners [::]:15008 and [::]:15006 (IP_TRANSPARENT)
//   enrolled:       W1 10.244.1.2 + fd00:244:1::2 (permissive), W2 10.244.1.3 (STRICT mTLS)
//   deny rules:     10.9.0.0/16 -> W1 any port;  10.8.0.5/32 -> W1 port 8080
//
// Under BPF_PROG_TEST_RUN the kernel pulls no VLAN tag into skb->vlan_tci, so a row's tags are
// exactly what a program would find in a real frame's data after the kernel pulled the outer
// one: a row with one tag is the two-tag frame of the attack (issue: tagged frames).
//
// BPF_PROG_TEST_RUN does not run a program at tc ingress, so the kernel refuses bpf_sk_assign
// there (EOPNOTSUPP): a row that steers shows its decision counter and tc_drop_assign, after
// the listener lookup succeeded (without a listener it is tc_drop_no_proxy instead). The
// end-to-end tests (tests/e2e/datapath_test.cpp) show the real assignment.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include <filesystem>
#include <map>
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
      options.host_cgroup = cgroup_.child("host");
      datapath_ = BpfDatapath::start(options);
      datapath_->enroll({"w1", cgroup_.child("w1"), "", {make_address("10.244.1.2"), make_address("fd00:244:1::2")}, false});
      datapath_->enroll({"w2", cgroup_.child("w2"), "", {make_address("10.244.1.3")}, true});
      datapath_->set_deny_rules({
          {1, {make_address("10.9.0.0"), 16}, make_address("10.244.1.2"), 0},
          {2, {make_address("10.8.0.5"), 32}, make_address("10.244.1.2"), 8080},
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

  enum class Hook { Ingress, Door };
  // Runs the frame; checks the verdict and that the counters in `moved` are the only ones that
  // moved, each by one.
  void expect(const packet::Spec& spec, int verdict, std::vector<Field> moved, const std::string& description,
              Hook hook = Hook::Ingress, uint32_t mark = 0) {
    expect_frame(packet::build(spec), verdict, moved, description, hook, mark);
  }
  void expect_frame(const std::vector<uint8_t>& frame, int verdict, std::vector<Field> moved,
                    const std::string& description, Hook hook = Hook::Ingress, uint32_t mark = 0) {
    SCOPED_TRACE(description);
    const zm_counters before = datapath_->counters();
    EXPECT_EQ(netns_->run([&] {
      return hook == Hook::Ingress ? datapath_->test_run_tc_ingress(frame) : datapath_->test_run_tc_egress(frame, mark);
    }), verdict);
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
      {"UDP from a denied source: passes (zmesh meshes TCP, as ztunnel does)",
       {.src = "10.9.3.4", .dst = "10.244.1.2", .protocol = IPPROTO_UDP, .dst_port = 53}, kPass, {&zm_counters::tc_passed}},
      {"UDP to a STRICT pod: passes (STRICT governs TCP)",
       {.src = "10.244.2.2", .dst = "10.244.1.3", .protocol = IPPROTO_UDP, .dst_port = 53}, kPass, {&zm_counters::tc_passed}},
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

// Stacked VLAN tags: after tc the kernel strips priority tags and delivers the IP behind them,
// so nothing tagged may reach a pod, and a frame too deep to read cannot be let through.
TEST_F(TcIngressTest, TaggedFramesNeverReachAPod) {
  open_listeners();
  constexpr uint16_t q = 0x8100, ad = 0x88A8;
  struct Row {
    const char* description;
    packet::Spec spec;
    int verdict;
    std::vector<Field> counters;
  } rows[] = {
      {"802.1Q (the inner of 802.1Q+802.1Q), SYN to a STRICT pod: dropped",
       {.src = "10.100.0.1", .dst = "10.244.1.3", .dst_port = 8080, .tags = {q}}, kDrop, {&zm_counters::tc_drop_tagged}},
      {"802.1Q+802.1Q in the data, SYN to a STRICT pod: dropped",
       {.src = "10.100.0.1", .dst = "10.244.1.3", .dst_port = 8080, .tags = {q, q}}, kDrop, {&zm_counters::tc_drop_tagged}},
      {"802.1ad+802.1Q, SYN to a STRICT pod: dropped",
       {.src = "10.100.0.1", .dst = "10.244.1.3", .dst_port = 8080, .tags = {ad, q}}, kDrop, {&zm_counters::tc_drop_tagged}},
      {"802.1Q, IPv6 SYN to a pod: dropped",
       {.src = "fd00:100::1", .dst = "fd00:244:1::2", .dst_port = 8080, .tags = {q}}, kDrop, {&zm_counters::tc_drop_tagged}},
      {"802.1Q, SYN to a pod's HBONE port: dropped too (steering would not survive the untagging)",
       {.src = "10.100.0.1", .dst = "10.244.1.2", .dst_port = 15008, .tags = {q}}, kDrop, {&zm_counters::tc_drop_tagged}},
      {"802.1Q, UDP to a pod: dropped (the tag is the problem, not the protocol)",
       {.src = "10.100.0.1", .dst = "10.244.1.2", .protocol = IPPROTO_UDP, .dst_port = 53, .tags = {q}}, kDrop,
       {&zm_counters::tc_drop_tagged}},
      {"802.1Q to an address outside the mesh: passes",
       {.src = "10.100.0.1", .dst = "10.100.0.2", .dst_port = 22, .tags = {q}}, kPass, {&zm_counters::tc_passed}},
      {"four tags (the most the parser reads) to a pod: dropped",
       {.src = "10.100.0.1", .dst = "10.244.1.2", .dst_port = 80, .tags = {ad, q, q, q}}, kDrop,
       {&zm_counters::tc_drop_tagged}},
      {"five tags: where it goes cannot be read: dropped",
       {.src = "10.100.0.1", .dst = "10.100.0.2", .dst_port = 22, .tags = {ad, q, q, q, q}}, kDrop,
       {&zm_counters::tc_drop_unparsed}},
  };
  for (const auto& row : rows) expect(row.spec, row.verdict, row.counters, row.description);

  // Not IP behind a tag (ARP), and a frame cut inside its tag: nothing that can become IP.
  auto arp = packet::build({.src = "10.100.0.1", .dst = "10.244.1.2", .tags = {q}});
  arp[16] = 0x08, arp[17] = 0x06;
  expect_frame(arp, kPass, {&zm_counters::tc_passed}, "ARP behind a tag: passes");
  auto cut = packet::build({.src = "10.100.0.1", .dst = "10.244.1.2", .tags = {q}});
  cut.resize(14 + 2);
  expect_frame(cut, kPass, {&zm_counters::tc_passed}, "cut inside the tag: passes (no IP to deliver)");
}

// The pod's door (tc egress on its veth): a new connection gets in only from zmeshd's sockets
// (their mark) or the kubelet's probe cgroup (tested end to end: BPF_PROG_TEST_RUN has no
// socket); everything else that is not a new connection passes.
TEST_F(TcIngressTest, TheDoorLetsNewConnectionsInOnlyFromZmeshd) {
  constexpr uint32_t kProxy = DatapathOptions::kProxyMark;
  struct Row {
    const char* description;
    packet::Spec spec;
    uint32_t mark;
    int verdict;
    std::vector<Field> counters;
  } rows[] = {
      {"SYN into a STRICT pod, not from zmeshd: dropped",
       {.src = "10.244.1.1", .dst = "10.244.1.3", .dst_port = 8080}, 0, kDrop, {&zm_counters::tc_drop_bypass}},
      {"SYN into a PERMISSIVE pod, not from zmeshd: dropped (plaintext goes through :15006)",
       {.src = "10.100.0.9", .dst = "10.244.1.2", .dst_port = 8080}, 0, kDrop, {&zm_counters::tc_drop_bypass}},
      {"IPv6 SYN, not from zmeshd: dropped",
       {.src = "fd00:244:1::1", .dst = "fd00:244:1::2", .dst_port = 8080}, 0, kDrop, {&zm_counters::tc_drop_bypass}},
      {"SYN from zmeshd (its mark): passes",
       {.src = "10.244.1.1", .dst = "10.244.1.3", .dst_port = 8080}, kProxy, kPass, {&zm_counters::tc_door_passed}},
      {"a mark that is not zmeshd's: dropped",
       {.src = "10.244.1.1", .dst = "10.244.1.3", .dst_port = 8080}, kProxy + 1, kDrop, {&zm_counters::tc_drop_bypass}},
      {"SYN-ACK (the pod's own outbound connection): passes",
       {.src = "10.244.2.2", .dst = "10.244.1.3", .src_port = 80, .dst_port = 40000, .tcp_flags = kSyn | kAck}, 0,
       kPass, {&zm_counters::tc_door_passed}},
      {"an ACK of an established connection: passes",
       {.src = "10.244.2.2", .dst = "10.244.1.3", .src_port = 80, .dst_port = 40000, .tcp_flags = kAck, .payload = 100},
       0, kPass, {&zm_counters::tc_door_passed}},
      {"UDP: passes", {.src = "10.244.2.2", .dst = "10.244.1.3", .protocol = IPPROTO_UDP, .dst_port = 53}, 0, kPass,
       {&zm_counters::tc_door_passed}},
      {"SYN to an address that is no enrolled pod: passes",
       {.src = "10.244.1.1", .dst = "10.244.9.9", .dst_port = 8080}, 0, kPass, {&zm_counters::tc_door_passed}},
      {"SYN inside a tag: dropped", {.src = "10.244.1.1", .dst = "10.244.1.3", .dst_port = 8080, .tags = {0x8100}}, 0,
       kDrop, {&zm_counters::tc_drop_unparsed}},
      {"IPv6 behind an extension header: dropped (a SYN could hide there)",
       {.src = "fd00:244:2::2", .dst = "fd00:244:1::2", .protocol = 0, .payload = 48}, 0, kDrop,
       {&zm_counters::tc_drop_unparsed}},
  };
  for (const auto& row : rows)
    expect(row.spec, row.verdict, row.counters, row.description, Hook::Door, row.mark);
  auto fragment = packet::build({.src = "10.244.1.1", .dst = "10.244.1.3", .dst_port = 8080});
  fragment[14 + 6] |= 0x20;
  expect_frame(fragment, kDrop, {&zm_counters::tc_drop_unparsed}, "a TCP fragment: dropped", Hook::Door);
  auto udp_fragment = packet::build({.src = "10.244.1.1", .dst = "10.244.1.3", .protocol = IPPROTO_UDP, .payload = 8});
  udp_fragment[14 + 6] |= 0x20;
  expect_frame(udp_fragment, kPass, {&zm_counters::tc_door_passed}, "a UDP fragment: passes", Hook::Door);
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
  EXPECT_EQ(maps.deny_rule_count(), 2u);
  datapath_->set_deny_rules({{3, {make_address("10.7.0.0"), 24}, make_address("10.244.1.3"), 0}});
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
    datapath_->set_deny_rules({{7, {make_address("fd00::1"), 64}, make_address("10.244.1.2"), 0}});
    FAIL() << "a rule mixing families was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("deny rule 7"), std::string::npos) << e.what();
  }
  EXPECT_THROW(datapath_->set_deny_rules({{8, {make_address("10.0.0.0"), 33}, make_address("10.244.1.2"), 0}}),
               std::invalid_argument);
  EXPECT_EQ(PinnedMaps(pins_.path()).deny_rule_count(), 2u) << "a rejected set must leave the old rules in place";
}

// The programs pin exactly the maps bpf/zmesh_maps.h lists (userspace opens them by that list),
// each with the capacity the header gives it.
TEST_F(TcIngressTest, ThePinnedMapsAreTheSharedHeadersList) {
  std::set<std::string> listed, pinned;
#define ZM_LISTED(name) listed.insert(#name);
  ZM_PINNED_MAPS(ZM_LISTED)
#undef ZM_LISTED
  for (const auto& entry : std::filesystem::directory_iterator(pins_.path()))
    if (!entry.is_directory()) pinned.insert(entry.path().filename());  // links/ holds the links
  EXPECT_EQ(pinned, listed);
  const std::map<std::string, uint32_t> capacity = {
      {"zm_dests", ZM_MAX_DESTS},  {"zm_dest_cidrs", ZM_MAX_DEST_CIDRS}, {"zm_workloads", ZM_MAX_WORKLOADS},
      {"zm_orig", ZM_MAX_CONNS},   {"zm_cookie_orig", ZM_MAX_CONNS},     {"zm_sockhash", ZM_MAX_CONNS},
      {"zm_sc_tcponly", ZM_MAX_CONNS}, {"zm_l4_deny", ZM_MAX_DENY}, {"zm_layout", 1},                     {"zm_counters", 1},
      {"zm_fast_state", 1}, {"zm_fast_verdicts", ZM_MAX_FAST}, {"zm_fast_conns", ZM_MAX_FAST},
      {"zm_fast_events", ZM_FAST_EVENTS_BYTES}};
  for (const auto& name : listed) {
    SCOPED_TRACE(name);
    const int fd = bpf_obj_get((pins_.path() / name).c_str());
    ASSERT_GE(fd, 0);
    bpf_map_info info{};
    uint32_t len = sizeof info;
    ASSERT_EQ(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
    close(fd);
    ASSERT_TRUE(capacity.contains(name)) << "a new map: give its capacity here";
    EXPECT_EQ(info.max_entries, capacity.at(name));
  }
}

TEST_F(TcIngressTest, AFullDestinationMapIsAClearErrorAndKeepsWhatIsThere) {
  // Fill zm_dests with 10.200.x.y addresses, then one more.
  uint32_t added = 0;
  try {
    for (uint32_t i = 0; i < ZM_MAX_DESTS + 1; ++i, ++added)
      datapath_->add_destination(boost::asio::ip::address_v4(0x0ac80000u + i), DestinationKind::Workload);
    FAIL() << ZM_MAX_DESTS + 1 << " destinations fit in the map";
  } catch (const DatapathError& e) {
    const std::string full = "map zm_dests is full (" + std::to_string(ZM_MAX_DESTS) + " entries)";
    EXPECT_NE(std::string(e.what()).find(full), std::string::npos) << e.what();
  }
  EXPECT_EQ(added, static_cast<uint32_t>(ZM_MAX_DESTS));
  EXPECT_EQ(PinnedMaps(pins_.path()).destinations().size(), static_cast<size_t>(ZM_MAX_DESTS))
      << "nothing already there was lost";
}

}  // namespace
}  // namespace zmesh
