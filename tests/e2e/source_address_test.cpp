// The client's address reaches the server (issue 17): an nginx in app1-n2 logs who connected
// to it, for every way a connection reaches a pod through zmeshd, IPv4 and IPv6, while a
// capture on the link between the nodes shows that no packet carrying a pod's connection in
// clear ever left a node (the pod's answers to a client address are kept on its node).
//
//   app1-n1 ── node1 zmeshd ══ HBONE ══ node2 zmeshd ── app1-n2 (nginx :8080, PERMISSIVE)
//   app2-n1 (outside the mesh), node1 itself ── plaintext ──▶ node2 15006 ──┘   app2-n2 (same node)
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "capture.h"
#include "eventually.h"
#include "lab.h"
#include "metrics.h"

namespace zmesh::test {
namespace {

namespace fs = std::filesystem;

class SourceAddressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
  }
  void up(std::vector<std::string> zmeshd_args = {}) {
    lab_ = std::make_unique<Lab>(
        LabOptions{.nodes = 2, .pods = 2, .mesh = true, .zmeshd_args = zmeshd_args, .permissive = {"app1-n2"},
                   .not_in_config = {"app2-n1"}});
    dir_ = lab_->topology().at("stateDir").get<std::string>() + "/nginx";
    fs::create_directories(dir_ + "/www");
    std::ofstream(dir_ + "/www/index.html") << "hello\n";
    // One line per request: the address the connection came from, as the server's kernel gives it.
    std::ofstream(dir_ + "/nginx.conf")
        << "daemon off; master_process off; pid " << dir_ << "/nginx.pid; error_log " << dir_ << "/error.log;\n"
        << "events { worker_connections 64; }\n"
        << "http { log_format peer '$remote_addr'; access_log " << dir_ << "/access.log peer;\n"
        << "  server { listen 8080; listen [::]:8080 ipv6only=on; root " << dir_ << "/www; } }\n";
    nginx_ = std::make_unique<Process>(lab_->exec("app1-n2", {"nginx", "-c", dir_ + "/nginx.conf", "-p", dir_}));
    ASSERT_TRUE(eventually([&] { return fs::exists(dir_ + "/nginx.pid"); })) << "nginx did not start";
  }
  std::string ip(const std::string& name, const char* family) const {
    const auto& where = name.rfind("node", 0) == 0 ? lab_->node(name) : lab_->pod(name);
    return where.at(family);
  }
  // GET from `where` to app1-n2 over `family`; returns the address nginx logged for it.
  std::string who_called(const std::string& where, const char* family) {
    const std::string host = ip("app1-n2", family);
    const std::string url = std::string("http://") + (family == std::string("ip6") ? "[" + host + "]" : host) + ":8080/";
    auto got = run(lab_->exec(where, {"curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", url}));
    EXPECT_EQ(got.exit_code, 0) << where << " -> " << url << ": " << got.err;
    EXPECT_EQ(got.out, "200") << where << " -> " << url;
    ++requests_;
    std::string last;
    // nginx writes the line when the request ends, a moment after curl has its answer.
    eventually([&] {
      std::ifstream log(dir_ + "/access.log");
      std::vector<std::string> lines;
      for (std::string line; std::getline(log, line);) lines.push_back(line);
      if (lines.size() < requests_) return false;
      last = lines.back();
      return true;
    });
    return last;
  }
  uint64_t kernel(const std::string& node, const std::string& event) const {
    return static_cast<uint64_t>(
        Metrics::scrape(*lab_, node).sum("zmesh_datapath_events_total", {{"event", event}}));
  }

  std::unique_ptr<Lab> lab_;
  std::unique_ptr<Process> nginx_;
  std::string dir_;
  size_t requests_ = 0;
};

TEST_F(SourceAddressTest, ThePodSeesItsClientsOwnAddressAndNoAnswerLeavesTheNode) {
  up();
  Capture capture(lab_->topology().at("fabricNetns"), "br0",
                  lab_->topology().at("stateDir").get<std::string>() + "/fabric.pcap");

  for (const char* family : {"ip", "ip6"}) {
    SCOPED_TRACE(family);
    // Across nodes over HBONE: node2 connects to the pod from app1-n1's address.
    EXPECT_EQ(who_called("app1-n1", family), ip("app1-n1", family));
    // On one node: app2-n2's connect is captured and carried by node2's zmeshd.
    EXPECT_EQ(who_called("app2-n2", family), ip("app2-n2", family));
    // Plaintext from outside the mesh to the PERMISSIVE pod: a pod the mesh does not capture,
    // and node1 itself (no identity).
    EXPECT_EQ(who_called("app2-n1", family), ip("app2-n1", family));
    EXPECT_EQ(who_called("node1", family), ip("node1", family));
    // A pod calling itself through the mesh: its own address would be dropped by its kernel,
    // so zmeshd falls back to the node's gateway address and says why.
    EXPECT_EQ(who_called("app1-n2", family), lab_->node("node2").at(family == std::string("ip") ? "gateway" : "gateway6"));
  }
  EXPECT_TRUE(lab_->log_shows("node2", "connecting from the node's address, not the client's " + ip("app1-n2", "ip") +
                                           ": the client is the pod itself"));
  EXPECT_GE(kernel("node2", "tc_reply_to_proxy"), 4u) << "the pod's answers to client addresses were steered back";

  auto packets = [&](const std::string& filter) { return capture.count(filter); };
  // Stop once the last connection's end is in the file (a leaked answer of that connection
  // would come before its end).
  const std::string last_end = "ipv6.src == " + ip("node1", "ip6") + " && tcp.dstport == 8080 && tcp.flags.fin == 1";
  EXPECT_TRUE(eventually([&] { return packets(last_end) > 0; })) << "the capture never held the last connection";
  capture.stop();
  EXPECT_GT(packets("tcp.port == 15008"), 10u) << "the mesh traffic crossed the link as HBONE";
  // Meshed connections cross as HBONE only: nothing to or from port 8080 of any pod but the
  // plaintext the clients outside the mesh chose, and none with a meshed client's address.
  const std::string outside = "(ip.addr == " + ip("node1", "ip") + " || ipv6.addr == " + ip("node1", "ip6") +
                            " || ip.addr == " + ip("app2-n1", "ip") + " || ipv6.addr == " + ip("app2-n1", "ip6") + ")";
  EXPECT_EQ(packets("tcp.port == 8080 && !" + outside), 0u) << "a pod's connection crossed the link in clear";
  for (const std::string pod : {"app1-n1", "app2-n2", "app1-n2"})
    EXPECT_EQ(packets("(ip.addr == " + ip(pod, "ip") + " || ipv6.addr == " + ip(pod, "ip6") +
                      ") && tcp.port != 15008 && !" + outside),
              0u)
        << pod << "'s address crossed the link outside HBONE";
  // The plaintext: one handshake per client and family with node2's listener, and no second
  // one from the pod answering the client's address for the connection zmeshd made in its name.
  EXPECT_EQ(packets("tcp.flags.syn == 1 && tcp.flags.ack == 1 && tcp.srcport == 8080 && !tcp.analysis.retransmission"), 4u)
      << "the pod's answer to the client's address left the node";
}

TEST_F(SourceAddressTest, TurnedOffThePodSeesTheNodesGateway) {
  up({"--preserve-source", "off"});
  for (const char* family : {"ip", "ip6"}) {
    SCOPED_TRACE(family);
    const std::string gateway = lab_->node("node2").at(family == std::string("ip") ? "gateway" : "gateway6");
    EXPECT_EQ(who_called("app1-n1", family), gateway);
    EXPECT_EQ(who_called("app2-n2", family), gateway);
  }
  EXPECT_EQ(kernel("node2", "tc_reply_to_proxy"), 0u);
}

}  // namespace
}  // namespace zmesh::test
