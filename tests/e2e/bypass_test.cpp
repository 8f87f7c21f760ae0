// The ways around the mesh, tried as an attacker and a careless operator would: frames that
// hide a SYN behind VLAN tags, the node's own processes (root, nobody, outside every captured
// cgroup), a pod nobody enrolled, UDP. Each test checks what the kernel and the proxy count,
// not what they log.
//
//   app1-n1 (STRICT), app2-n1 (PERMISSIVE) ── node1 zmeshd ══ fabric br0 ══ node2 zmeshd ── app1-n2 (STRICT),
//   app2-n2 (PERMISSIVE)
//   node1's processes: nodeK/host (captured), nodeK/kubelet (health probes), anything else
//   in node1's netns (uncaptured: the door at the pod's veth stops it)
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>

#include "echo.h"
#include "eventually.h"
#include "lab.h"
#include "metrics.h"
#include "netns.h"
#include "zmesh/packet.h"

namespace zmesh::test {
namespace {

using Mac = std::array<uint8_t, 6>;

Mac mac_of(const std::string& ifname) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq req{};
  std::strncpy(req.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  const int rc = ioctl(fd, SIOCGIFHWADDR, &req);
  close(fd);
  if (rc != 0) throw std::runtime_error("SIOCGIFHWADDR " + ifname + ": " + std::strerror(errno));
  Mac mac;
  std::memcpy(mac.data(), req.ifr_hwaddr.sa_data, mac.size());
  return mac;
}

// A raw socket on one interface of the caller's netns: sends frames as they are, and sees
// every frame that arrives.
class RawLink {
 public:
  explicit RawLink(const std::string& ifname) : ifindex_(if_nametoindex(ifname.c_str())) {
    fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
    if (fd_ < 0 || ifindex_ == 0) throw std::runtime_error("raw socket on " + ifname + ": " + std::strerror(errno));
    sockaddr_ll at{};
    at.sll_family = AF_PACKET;
    at.sll_protocol = htons(ETH_P_ALL);
    at.sll_ifindex = static_cast<int>(ifindex_);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0)
      throw std::runtime_error("bind raw socket to " + ifname + ": " + std::strerror(errno));
  }
  ~RawLink() { close(fd_); }
  void send(const std::vector<uint8_t>& frame) {
    if (::send(fd_, frame.data(), frame.size(), 0) != static_cast<ssize_t>(frame.size()))
      throw std::runtime_error(std::string("send a raw frame: ") + std::strerror(errno));
  }
  // Whether a TCP SYN-ACK from `from` (IPv4, untagged) arrives within `limit`.
  bool syn_ack_from(const std::string& from, std::chrono::milliseconds limit) {
    in_addr want{};
    inet_pton(AF_INET, from.c_str(), &want);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    uint8_t buf[2048];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      poll(&p, 1, 50);
      sockaddr_ll from_ll{};
      socklen_t len = sizeof from_ll;
      const ssize_t n = recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from_ll), &len);
      if (n < 14 + 20 + 20 || from_ll.sll_pkttype == PACKET_OUTGOING) continue;
      if (buf[12] != 0x08 || buf[13] != 0x00 || buf[14 + 9] != IPPROTO_TCP) continue;
      if (std::memcmp(buf + 14 + 12, &want, 4) != 0) continue;
      const uint8_t flags = buf[14 + (buf[14] & 0x0f) * 4 + 13];
      if ((flags & 0x12) == 0x12) return true;
    }
    return false;
  }

 private:
  unsigned ifindex_;
  int fd_ = -1;
};

class BypassTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
  }
  void up(LabOptions options = {}) {
    options.mesh = true;
    if (options.permissive.empty()) options.permissive = {"app2-n1", "app2-n2"};
    lab_ = std::make_unique<Lab>(options);
  }
  std::string ip(const std::string& pod, const char* family = "ip") const { return lab_->pod(pod).at(family); }
  uint64_t kernel(const std::string& node, const char* counter) const {
    auto maps = lab_->zmeshctl(node, {"maps"});
    return nlohmann::json::parse(maps.out).at("counters").at(counter).get<uint64_t>();
  }
  nlohmann::json stats(const std::string& node) const { return test::stats(*lab_, node); }
  // zm-echo send from one of node1's cgroups (or, with cgroup "", from outside all of the lab's).
  Result send_from_node(const std::string& to, int port, const std::string& cgroup = "host",
                        const std::vector<std::string>& as_user = {}) {
    std::vector<std::string> command = as_user;
    for (const auto& arg : {bin_path("zm-echo"), std::string("send"), std::string("--to"), to, std::string("--port"),
                            std::to_string(port), std::string("--bytes"), std::string("4096"),
                            std::string("--connect-timeout-ms"), std::string("3000")})
      command.push_back(arg);
    if (cgroup.empty()) {
      std::vector<std::string> argv{"nsenter", "--net=/run/netns/" + lab_->node("node1").at("netns").get<std::string>(),
                                    "--"};
      argv.insert(argv.end(), command.begin(), command.end());
      return run(argv);
    }
    return run(lab_->exec("node1", command, cgroup));
  }
  std::unique_ptr<Lab> lab_;
};

const std::vector<std::string> kNobody{"setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"};

// Reproduces the report: from node1's netns, a SYN to a pod on node2 inside 802.1Q+802.1Q (or
// 802.1ad+802.1Q) with VID 0. The kernel pulls the outer tag before tc and strips the inner one
// after; before the fix the pod answered. The same frame untagged to a PERMISSIVE pod is
// answered (by the proxy, on the pod's behalf), which shows the frames themselves are good.
TEST_F(BypassTest, SynsInsideStackedVlanTagsReachNoPod) {
  up();
  auto strict = echo_server(*lab_, "app1-n2", 8080);
  auto permissive = echo_server(*lab_, "app2-n2", 8080);
  const Mac node2_mac = NetnsThread(lab_->node("node2").at("netns")).run([] { return mac_of("eth0"); });
  NetnsThread node1(lab_->node("node1").at("netns"));
  const Mac node1_mac = node1.run([] { return mac_of("eth0"); });
  auto frame = [&](const std::string& dst, std::vector<uint16_t> tags, const std::string& src = "10.100.0.1",
                   uint16_t sport = 41000) {
    return packet::build({.src = src, .dst = dst, .src_port = sport, .dst_port = 8080, .tcp_seq = 7,
                          .tags = std::move(tags), .dst_mac = node2_mac, .src_mac = node1_mac});
  };
  const std::string strict_ip = ip("app1-n2"), permissive_ip = ip("app2-n2");

  // Untagged to the PERMISSIVE pod: answered. Tagged, the same: dropped at tc.
  EXPECT_TRUE(node1.run([&] {
    RawLink link("eth0");
    link.send(frame(permissive_ip, {}));
    return link.syn_ack_from(permissive_ip, std::chrono::seconds(5));
  })) << "the control frame (untagged, to a PERMISSIVE pod) got no SYN-ACK: the test cannot tell anything";

  struct Case {
    const char* description;
    std::string dst;
    std::vector<uint16_t> tags;
  } cases[] = {
      {"802.1Q + 802.1Q to a STRICT pod", strict_ip, {0x8100, 0x8100}},
      {"802.1ad + 802.1Q to a STRICT pod", strict_ip, {0x88A8, 0x8100}},
      {"802.1Q + 802.1Q to a PERMISSIVE pod", permissive_ip, {0x8100, 0x8100}},
      {"three tags to a STRICT pod", strict_ip, {0x88A8, 0x8100, 0x8100}},
  };
  uint16_t sport = 42000;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.description);
    const uint64_t before = kernel("node2", "tc_drop_tagged");
    const bool answered = node1.run([&] {
      RawLink link("eth0");
      link.send(frame(c.dst, c.tags, "10.100.0.1", sport++));
      return link.syn_ack_from(c.dst, std::chrono::seconds(2));
    });
    EXPECT_FALSE(answered) << "a tagged SYN reached the pod";
    EXPECT_EQ(kernel("node2", "tc_drop_tagged"), before + 1) << "dropped at tc, and counted";
  }
  EXPECT_EQ(kernel("node2", "tc_to_plaintext"), 1u) << "only the untagged control frame was steered in";

  // IPv6 behind two tags.
  const uint64_t before6 = kernel("node2", "tc_drop_tagged");
  node1.run([&] {
    RawLink link("eth0");
    link.send(packet::build({.src = "fd00:100::1", .dst = ip("app1-n2", "ip6"), .dst_port = 8080,
                             .tags = {0x8100, 0x8100}, .dst_mac = node2_mac, .src_mac = node1_mac}));
  });
  EXPECT_TRUE(eventually([&] { return kernel("node2", "tc_drop_tagged") == before6 + 1; }));
}

// The node's own processes (any uid; on a real node every host process and hostNetwork pod)
// are captured as a source without identity: a STRICT pod refuses them, IPv4 and IPv6.
// zmeshd connects to a pod from its client's address, and zm_tc_ingress hands the pod's
// answers to zmeshd's socket: only packets that came out of that pod's own veth. A frame from
// the network that claims to be the pod answering, with the tuple of zmeshd's open connection,
// is not taken into it (docs/security.md), for a client on another node and for one on the
// pod's node: tc passes it (counted so), assigns nothing to a socket of zmeshd's, and the
// kernel does not forward a packet its early demux matched to a local socket.
TEST_F(BypassTest, AForgedAnswerFromTheNetworkIsNotTakenIntoZmeshdsConnection) {
  up();
  auto server = echo_server(*lab_, "app1-n2", 8080, {"--connections", "10"});
  const std::string pod = ip("app1-n2");
  const Mac node2_mac = NetnsThread(lab_->node("node2").at("netns")).run([] { return mac_of("eth0"); });
  NetnsThread node1(lab_->node("node1").at("netns"));
  const Mac node1_mac = node1.run([] { return mac_of("eth0"); });

  for (const std::string client_pod : {"app1-n1", "app2-n2"}) {
    SCOPED_TRACE("client " + client_pod);
    const std::string client = ip(client_pod);
    // A connection that stays open: node2's zmeshd holds client:port -> pod:8080.
    Process hold(lab_->exec(client_pod, {"python3", "-c",
                                         "import socket,sys,time; s=socket.create_connection(('" + pod +
                                             "',8080)); print('open', flush=True); time.sleep(60)"}));
    ASSERT_TRUE(hold.wait_for("open"));
    uint16_t port = 0;
    ASSERT_TRUE(eventually([&] {
      auto ss = run(lab_->exec("node2", {"ss", "-Htn", "state", "established", "dst", pod + ":8080"}));
      std::istringstream lines(ss.out);
      for (std::string recvq, sendq, local, peer; lines >> recvq >> sendq >> local >> peer;)
        if (local.rfind(client + ":", 0) == 0) port = static_cast<uint16_t>(std::stoi(local.substr(client.size() + 1)));
      return port != 0;
    })) << "node2's zmeshd holds no connection to the pod from the client's address";
    // Packets given to zmeshd's sockets (pods' answers; the rest of its connections), and passed.
    auto assigned = [&] { return kernel("node2", "tc_reply_to_proxy") + kernel("node2", "tc_followed"); };
    const uint64_t before = assigned(), passed = kernel("node2", "tc_passed"), tagged = kernel("node2", "tc_drop_tagged");

    // Four forged answers, then a marker that only zm_tc_ingress counts (a frame inside two
    // VLAN tags, dropped as tc_drop_tagged): once it is counted, the forged ones were judged.
    node1.run([&] {
      RawLink link("eth0");
      for (uint8_t flags : {0x10, 0x18, 0x04, 0x11})  // ACK, PSH+ACK, RST, FIN+ACK
        link.send(packet::build({.src = pod, .dst = client, .src_port = 8080, .dst_port = port, .tcp_flags = flags,
                                 .payload = 16, .tcp_seq = 7, .dst_mac = node2_mac, .src_mac = node1_mac}));
      link.send(packet::build({.src = "10.100.0.1", .dst = pod, .src_port = 41000, .dst_port = 8080,
                               .tags = {0x8100, 0x8100}, .dst_mac = node2_mac, .src_mac = node1_mac}));
      return 0;
    });
    ASSERT_TRUE(eventually([&] { return kernel("node2", "tc_drop_tagged") > tagged; })) << "node2 never saw the marker";
    EXPECT_EQ(assigned(), before) << "a frame from the network was taken as the pod's answer";
    EXPECT_GE(kernel("node2", "tc_passed"), passed + 4) << "the forged frames were passed";
  }
}

// The fast path lets a SYN into a STRICT pod for a tuple a pod of the node is connecting
// from (docs/datapath.md "The fast path"). The same SYN from the network, with that exact
// tuple, is refused as any plaintext is: only the pod's own veth may carry it.
TEST_F(BypassTest, AForgedSynWithAFastPathConnectionsTupleIsRefused) {
  up();
  auto server = echo_server(*lab_, "app1-n2", 8080, {"--connections", "10"});
  const std::string pod = ip("app1-n2"), client = ip("app2-n2");
  ASSERT_EQ(echo_send(*lab_, "app2-n2", pod, 8080, 1000).exit_code, 0);  // the proxy allows: cached
  Process hold(lab_->exec("app2-n2", {"python3", "-c",
                                      "import socket,sys,time; s=socket.create_connection(('" + pod +
                                          "',8080)); print(s.getsockname()[1], flush=True); time.sleep(60)"}));
  const auto line = hold.read_line(std::chrono::seconds(10));
  ASSERT_TRUE(line.has_value());
  const auto port = static_cast<uint16_t>(std::stoi(*line));
  ASSERT_EQ(kernel("node2", "tc_fast_path"), 1u) << "the held connection took the fast path";

  const Mac node2_mac = NetnsThread(lab_->node("node2").at("netns")).run([] { return mac_of("eth0"); });
  NetnsThread node1(lab_->node("node1").at("netns"));
  const Mac node1_mac = node1.run([] { return mac_of("eth0"); });
  const uint64_t refused = kernel("node2", "tc_drop_mtls");
  node1.run([&] {
    RawLink link("eth0");
    link.send(packet::build({.src = client, .dst = pod, .src_port = port, .dst_port = 8080, .tcp_flags = 0x02,
                             .dst_mac = node2_mac, .src_mac = node1_mac}));
    return 0;
  });
  EXPECT_TRUE(eventually([&] { return kernel("node2", "tc_drop_mtls") > refused; })) << "the forged SYN was not refused";
  EXPECT_EQ(kernel("node2", "tc_fast_path"), 1u);
}

TEST_F(BypassTest, TheNodesOwnProcessesAreRefusedByStrictPodsAsRootAndAsNobody) {
  up();
  auto server = echo_server(*lab_, "app1-n1", 8080, {"--connections", "100"});
  for (const char* family : {"ip", "ip6"}) {
    for (const auto& user : {std::vector<std::string>{}, kNobody}) {
      SCOPED_TRACE(std::string(family) + (user.empty() ? " as root" : " as uid 65534"));
      const uint64_t captured = kernel("node1", "connect_from_node");
      const auto refused = stats("node1").at("proxy").at("denied").get<uint64_t>();
      const auto sent = send_from_node(ip("app1-n1", family), 8080, "host", user);
      EXPECT_NE(sent.exit_code, 0) << sent.out;
      EXPECT_NE(sent.err.find("reset"), std::string::npos) << "refused with a reset: " << sent.err;
      EXPECT_EQ(kernel("node1", "connect_from_node"), captured + 1);
      EXPECT_EQ(stats("node1").at("proxy").at("denied").get<uint64_t>(), refused + 1);
    }
  }
  // A PERMISSIVE pod takes the node's plaintext, through the proxy.
  auto open = echo_server(*lab_, "app2-n1", 8080);
  const auto allowed = send_from_node(ip("app2-n1"), 8080);
  EXPECT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_NE(allowed.out.find("15001"), std::string::npos) << "went through the proxy: " << allowed.out;
}

// A DENY for the node's address covers the node's own connects, and a policy change closes
// one that is already open.
TEST_F(BypassTest, ADenyCoversTheNodesOwnConnections) {
  up();
  auto server = echo_server(*lab_, "app2-n1", 8080, {"--connections", "100"});
  // A connection held open from the node, then one short transfer: both allowed.
  Process held(lab_->exec("node1", {bin_path("zm-echo"), "send", "--to", ip("app2-n1"), "--port", "8080", "--bytes",
                                     "1000000", "--pause-ms", "50"}),
               Process::Stderr::Merge);
  ASSERT_TRUE(eventually([&] { return stats("node1").at("proxy").at("active").get<uint64_t>() == 1; }));
  EXPECT_EQ(send_from_node(ip("app2-n1"), 8080).exit_code, 0);

  const std::string policy = lab_->topology().at("stateDir").get<std::string>() + "/deny-node.json";
  std::ofstream(policy) << R"({"name": "no-node", "namespace": "default", "action": "DENY",
      "rules": [{"from": [{"source": {"ipBlocks": ["10.244.1.1/32", "fd00:244:1::1/128"]}}]}]})";
  const auto applied = lab_->zmeshctl("node1", {"policy", "apply", "-f", policy});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;

  EXPECT_NE(held.wait(), 0) << "the open connection was closed by the new policy";
  EXPECT_GE(stats("node1").at("proxy").at("revoked").get<uint64_t>(), 1u);
  const auto denied = send_from_node(ip("app2-n1"), 8080);
  EXPECT_NE(denied.exit_code, 0) << denied.out;
  const auto denied6 = send_from_node(ip("app2-n1", "ip6"), 8080, "host", kNobody);
  EXPECT_NE(denied6.exit_code, 0) << denied6.out;
}

// The kubelet's health probes come from its cgroup (--probe-cgroup) and reach even a STRICT
// pod directly; the same command from any other cgroup of the node does not.
TEST_F(BypassTest, KubeletProbesReachStrictPodsAndNothingElseOfTheNodeDoes) {
  up();
  auto server = echo_server(*lab_, "app1-n1", 8080, {"--connections", "100"});
  const uint64_t probes = kernel("node1", "tc_door_probe");
  for (const char* family : {"ip", "ip6"}) {
    const auto probe = send_from_node(ip("app1-n1", family), 8080, "kubelet");
    EXPECT_EQ(probe.exit_code, 0) << probe.err;
    EXPECT_NE(probe.out.find(":8080\""), std::string::npos) << "straight to the pod: " << probe.out;
  }
  EXPECT_EQ(kernel("node1", "tc_door_probe"), probes + 2);
  EXPECT_EQ(send_from_node(ip("app1-n1"), 8080, "kubelet", kNobody).exit_code, 0) << "any uid of the kubelet's cgroup";
  EXPECT_NE(send_from_node(ip("app1-n1"), 8080, "host").exit_code, 0) << "the node's other processes are refused";
}

// A process of the node's netns that no capture hook covers (outside --host-cgroup) is
// stopped at the pod's door, STRICT or PERMISSIVE: nothing reaches a meshed pod around zmeshd.
TEST_F(BypassTest, ConnectsThatEscapeCaptureAreDroppedAtThePodsDoor) {
  up();
  auto strict = echo_server(*lab_, "app1-n1", 8080);
  auto permissive = echo_server(*lab_, "app2-n1", 8080);
  const uint64_t before = kernel("node1", "tc_drop_bypass");
  for (const std::string pod : {"app1-n1", "app2-n1"}) {
    SCOPED_TRACE(pod);
    const auto sent = send_from_node(ip(pod), 8080, "");
    EXPECT_EQ(sent.exit_code, 2) << "the SYN was dropped (connect timed out): " << sent.out << sent.err;
  }
  EXPECT_GE(kernel("node1", "tc_drop_bypass"), before + 2);
}

// A pod of the node that nobody enrolled (a namespace outside the mesh) is plaintext like any
// other outsider: STRICT pods drop it, PERMISSIVE ones take it through :15006, and a pod's own
// veth is hooked without anyone naming it (every interface of the node is).
TEST_F(BypassTest, APodOutsideTheMeshOnTheSameNodeIsPlaintextLikeAnyOther) {
  up({.nodes = 1, .pods = 3, .permissive = {"app2-n1"}, .not_in_config = {"app3-n1"}});
  auto strict = echo_server(*lab_, "app1-n1", 8080);
  auto permissive = echo_server(*lab_, "app2-n1", 8080);
  const uint64_t mtls = kernel("node1", "tc_drop_mtls");
  EXPECT_EQ(echo_send(*lab_, "app3-n1", ip("app1-n1"), 8080, 4096, {"--connect-timeout-ms", "3000"}).exit_code, 2);
  EXPECT_GT(kernel("node1", "tc_drop_mtls"), mtls) << "steered at its own veth, which nobody named";
  const auto through = echo_send(*lab_, "app3-n1", ip("app2-n1"), 8080, 4096);
  EXPECT_EQ(through.exit_code, 0) << through.err;
  EXPECT_EQ(stats("node1").at("proxy").at("plaintextAccepted"), 1);
}

// zmesh meshes TCP, as ztunnel does (docs/security.md): UDP to a STRICT pod is delivered as
// it is, and a DENY policy installs no UDP drop. The kernel and the promise say the same.
TEST_F(BypassTest, UdpIsOutsideTheMeshAsDocumented) {
  up({.policies = R"([{"name": "no-node1", "namespace": "default", "action": "DENY",
                       "rules": [{"from": [{"source": {"ipBlocks": ["10.100.0.1/32"]}}]}]}])"});
  const std::string receive =
      "import socket,sys; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(('::', 5353)); "
      "print('listening', flush=True); d,a=s.recvfrom(100); print(d.decode(), flush=True)";
  for (const std::string pod : {"app1-n2", "app2-n2"}) {  // STRICT, and PERMISSIVE under the DENY
    SCOPED_TRACE(pod);
    Process receiver(lab_->exec(pod, {"python3", "-c", receive}));
    ASSERT_TRUE(receiver.wait_for("listening"));
    const std::string send = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'plain-udp', ('" +
                             ip(pod) + "', 5353))";
    ASSERT_EQ(run(lab_->exec("node1", {"python3", "-c", send})).exit_code, 0);
    EXPECT_TRUE(receiver.wait_for("plain-udp").has_value()) << "UDP is not captured: it arrives as sent";
  }
  const auto maps = nlohmann::json::parse(lab_->zmeshctl("node2", {"maps"}).out);
  ASSERT_FALSE(maps.at("denyRules").empty()) << "the DENY is in the kernel, for TCP";
  for (const auto& rule : maps.at("denyRules")) EXPECT_EQ(rule.at("protocol"), "TCP");
  auto tcp = echo_server(*lab_, "app2-n2", 8080);
  EXPECT_EQ(echo_send(*lab_, "node1", ip("app2-n2"), 8080, 4096, {"--connect-timeout-ms", "3000"}).exit_code, 2)
      << "while TCP from the denied source is dropped";
}

// Every interface of the node carries tc ingress without any option naming it (there is no
// --uplink to forget), including one that appears while zmeshd runs.
TEST_F(BypassTest, EveryInterfaceOfTheNodeIsHookedWithoutBeingNamed) {
  up({.nodes = 2, .pods = 1});
  auto links = [&] {
    std::string names;
    for (const auto& entry : std::filesystem::directory_iterator(lab_->node("node1").at("bpfRoot").get<std::string>() + "/links"))
      names += entry.path().filename().string() + " ";
    return names;
  };
  EXPECT_NE(links().find("_eth0 "), std::string::npos) << links();
  EXPECT_NE(links().find("_vpod1 "), std::string::npos) << links();
  ASSERT_EQ(run(lab_->exec("node1", {"ip", "link", "add", "zmtun0", "type", "veth", "peer", "name", "zmtun1"})).exit_code, 0);
  EXPECT_TRUE(eventually([&] { return links().find("_zmtun0 ") != std::string::npos; })) << links();
  ASSERT_EQ(run(lab_->exec("node1", {"ip", "link", "del", "zmtun0"})).exit_code, 0);
  EXPECT_TRUE(eventually([&] { return links().find("_zmtun0 ") == std::string::npos; })) << links();
}

}  // namespace
}  // namespace zmesh::test

namespace zmesh::test {
namespace {

size_t fds_of(pid_t pid) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) ++n;
  return n;
}

// The admin listener is on the node's loopback, which every local user reaches: reading is
// for anyone, but stopping zmeshd (/quitquitquit) or changing its log is for root (the
// kubelet's preStop hook runs as root). Metrics and readiness take connections from pods and
// other nodes: a bounded number, in all and per client, so idle ones cannot eat the
// descriptors the proxy needs.
TEST_F(BypassTest, LocalUsersCannotStopZmeshdAndIdleAdminConnectionsAreCapped) {
  up({.nodes = 2, .pods = 1});
  const std::string admin = "http://127.0.0.1:15000";
  auto as_nobody = [&](const std::vector<std::string>& curl) {
    std::vector<std::string> command = kNobody;
    for (const auto& arg : {std::string("curl"), std::string("-sS"), std::string("--max-time"), std::string("5"),
                            std::string("-o"), std::string("/dev/null"), std::string("-w"), std::string("%{http_code}")})
      command.push_back(arg);
    command.insert(command.end(), curl.begin(), curl.end());
    return run(lab_->exec("node1", command)).out;
  };
  EXPECT_EQ(as_nobody({"-X", "POST", admin + "/quitquitquit"}), "403");
  EXPECT_EQ(as_nobody({admin + "/quitquitquit"}), "403");
  EXPECT_EQ(as_nobody({"-X", "POST", admin + "/logging?level=off"}), "403");
  EXPECT_EQ(as_nobody({admin + "/logging"}), "200") << "reading stays open";
  EXPECT_EQ(as_nobody({admin + "/stats"}), "200");
  EXPECT_EQ(stats("node1").at("proxy").at("refused"), 0) << "zmeshd still serves";
  const std::string readiness = "http://" + lab_->node("node1").at("zmeshd").at("readiness").get<std::string>();
  EXPECT_EQ(run(lab_->exec("node1", {"curl", "-sS", readiness + "/healthz/ready"})).out, "ready\n");

  // 200 idle connections to :15020 from node2: zmeshd holds at most 8 of them.
  const pid_t zmeshd = lab_->node("node1").at("zmeshd").at("pid");
  const size_t fds_before = fds_of(zmeshd);
  const std::string metrics = lab_->node("node1").at("zmeshd").at("metrics");
  const std::string hold =
      "import socket,sys; h,p=sys.argv[1].rsplit(':',1); cs=[socket.create_connection((h,int(p))) for _ in range(200)]; "
      "print('held', flush=True); import time; time.sleep(120)";
  Process holder(lab_->exec("node2", {"python3", "-c", hold, metrics}));
  ASSERT_TRUE(holder.wait_for("held").has_value());
  EXPECT_TRUE(eventually([&] { return fds_of(zmeshd) <= fds_before + 8; }));
  EXPECT_LE(fds_of(zmeshd), fds_before + 8 + 2) << "(+2 for whatever else the daemon opened meanwhile)";
  auto scrape = [&](const std::string& from) {
    return run(lab_->exec(from, {"curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}",
                                 "http://" + metrics + "/metrics"}))
        .out;
  };
  EXPECT_NE(scrape("node2"), "200") << "node2 is at its limit";
  EXPECT_EQ(scrape("node1"), "200") << "another client is not";
  holder.kill();
  holder.wait();
  EXPECT_TRUE(eventually([&] { return scrape("node2") == "200"; })) << "the places come back";
}

}  // namespace
}  // namespace zmesh::test
