// The node proxy end to end: `lab up` runs a zmeshd on each node (one lab CA), pods talk
// through the mesh unchanged, and every byte between the nodes is HBONE over mutual TLS.
//
//   app1-n1 (sa app1), app2-n1 (sa app2) ── node1 zmeshd ══ HBONE :15008 ══ node2 zmeshd ── app1-n2, app2-n2
//                                              (fabric bridge br0 between the nodes: only TLS crosses it)
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "echo.h"
#include "lab.h"

namespace zmesh::test {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

class ProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
  }
  void up(std::vector<std::string> zmeshd_args = {}) {
    lab_ = std::make_unique<Lab>(LabOptions{.nodes = 2, .pods = 2, .mesh = true, .zmeshd_args = zmeshd_args});
  }
  std::string ip(const std::string& pod, const char* family = "ip") const { return lab_->pod(pod).at(family); }
  std::string log(const std::string& node) const {
    return read_file(lab_->node(node).at("zmeshd").at("log").get<std::string>());
  }
  void expect_whole(const Result& sent, int bytes) {
    ASSERT_EQ(sent.exit_code, 0) << sent.out << sent.err;
    auto report = nlohmann::json::parse(sent.out);
    EXPECT_TRUE(report.at("match").get<bool>());
    EXPECT_EQ(report.at("received"), bytes);
  }

  // A workload certificate for a client outside the mesh, from `ca_dir` (the lab CA by default).
  std::pair<std::string, std::string> mint(const std::string& name, const std::string& ca_dir,
                                           const std::string& ttl = "3600") {
    const std::string dir = lab_->topology().at("stateDir").get<std::string>();
    const std::string cert = dir + "/" + name + "-cert.pem", key = dir + "/" + name + "-key.pem";
    auto issued = run({bin_path("zmeshctl"), "ca", "issue", "--dir", ca_dir, "--id",
                       "spiffe://cluster.local/ns/default/sa/" + name, "--cert", cert, "--key", key, "--ttl", ttl});
    EXPECT_EQ(issued.exit_code, 0) << issued.err;
    return {cert, key};
  }
  std::string lab_ca_dir() const {
    return fs::path(lab_->topology().at("ca").at("cert").get<std::string>()).parent_path();
  }

  // Node.js http2 from node1's netns (not a pod: nothing captures it) to `connect`.
  Result node_client(const std::string& connect, const std::string& authority,
                     const std::pair<std::string, std::string>& cert, int bytes = 65536) {
    return run(lab_->exec("node1", {"node", source_path("tests/tools/hbone_client.mjs"), "--connect", connect,
                                    "--authority", authority, "--cert", cert.first, "--key", cert.second, "--ca",
                                    lab_->topology().at("ca").at("cert").get<std::string>(), "--bytes",
                                    std::to_string(bytes)}));
  }

  std::unique_ptr<Lab> lab_;
};

TEST_F(ProxyTest, PodsTalkAcrossNodesAndOnOneNodeWithEveryByteIntact) {
  up();
  auto remote = echo_server(*lab_, "app1-n2", 8080, {"--connections", "2"});
  auto local = echo_server(*lab_, "app1-n1", 8081);
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 32 << 20), 32 << 20);
  expect_whole(echo_send(*lab_, "app2-n1", ip("app1-n2", "ip6"), 8080, 8 << 20), 8 << 20);
  expect_whole(echo_send(*lab_, "app2-n1", ip("app1-n1"), 8081, 32 << 20), 32 << 20);
  const std::string node1 = log("node1"), node2 = log("node2");
  EXPECT_NE(node1.find("outbound 10.244.1.2"), std::string::npos) << node1;
  EXPECT_NE(node2.find("inbound 10.100.0.1"), std::string::npos) << "the HBONE peer is node1: " << node2;
  EXPECT_NE(node2.find("(spiffe://cluster.local/ns/default/sa/app2) -> [fd00:244:2::2]:8080"), std::string::npos)
      << "the server side knows the client's identity: " << node2;
  EXPECT_EQ(count(node1, "hbone: connected"), 2u) << "one TLS connection per (source, destination identity, node)";
}

TEST_F(ProxyTest, ConcurrentConnectionsShareOnePooledTlsConnection) {
  up();
  constexpr int kClients = 40, kBytes = 256 << 10;
  auto server = echo_server(*lab_, "app1-n2", 8080, {"--connections", std::to_string(kClients)});
  std::vector<std::unique_ptr<Process>> clients;
  for (int i = 0; i < kClients; ++i)
    clients.push_back(std::make_unique<Process>(lab_->exec(
        "app1-n1", {bin_path("zm-echo"), "send", "--to", ip("app1-n2"), "--port", "8080", "--bytes",
                    std::to_string(kBytes)})));
  int whole = 0;
  for (auto& client : clients) {
    auto line = client->read_line(std::chrono::seconds(30));
    if (client->wait() == 0 && line && nlohmann::json::parse(*line).at("match").get<bool>()) ++whole;
  }
  EXPECT_EQ(whole, kClients);
  EXPECT_EQ(count(log("node1"), "hbone: connected"), 1u) << "40 streams, one TLS handshake:\n" << log("node1");
  EXPECT_EQ(count(log("node2"), "] inbound "), static_cast<size_t>(kClients));
}

TEST_F(ProxyTest, HalfCloseCrossesTheMeshBothWays) {
  up();
  // The server answers only after it saw the client's FIN: the FIN went through HBONE
  // (END_STREAM), and the answer then came back on the half-open tunnel.
  auto server = echo_server(*lab_, "app1-n2", 8080, {"--after-eof"});
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 3 << 20), 3 << 20);
  auto seen = nlohmann::json::parse(*server->read_line());
  EXPECT_EQ(seen.at("error"), "");
}

TEST_F(ProxyTest, UpstreamRefusedAnswers503AndTheClientConnectionFails) {
  up();
  auto sent = echo_send(*lab_, "app1-n1", ip("app1-n2"), 9999, 1000);
  EXPECT_NE(sent.exit_code, 0) << "nothing listens on 9999: " << sent.out;
  EXPECT_NE(log("node2").find("HBONE 503"), std::string::npos) << log("node2");
  EXPECT_NE(log("node1").find("answered 503"), std::string::npos) << log("node1");
}

TEST_F(ProxyTest, AnIndependentHttp2ClientOpensAnHboneTunnel) {
  up();
  auto server = echo_server(*lab_, "app1-n2", 8083);
  auto cert = mint("tester", lab_ca_dir());
  auto result = node_client(ip("app1-n2") + ":15008", ip("app1-n2") + ":8083", cert, 1 << 20);
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  auto report = nlohmann::json::parse(result.out);
  EXPECT_EQ(report.at("status"), 200);
  EXPECT_TRUE(report.at("match").get<bool>());
  EXPECT_NE(log("node2").find("(spiffe://cluster.local/ns/default/sa/tester) -> " + ip("app1-n2") + ":8083"),
            std::string::npos)
      << log("node2");
}

TEST_F(ProxyTest, BadAuthoritiesAre400) {
  up();
  auto cert = mint("tester", lab_ca_dir());
  const std::string hbone = ip("app1-n2") + ":15008";
  for (const std::string& authority : {ip("app1-n1") + ":80", std::string("10.244.9.9:80"), ip("app2-n2") + ":80"}) {
    auto result = node_client(hbone, authority, cert);
    EXPECT_EQ(result.exit_code, 1) << authority << ": " << result.out << result.err;
    EXPECT_EQ(nlohmann::json::parse(result.out).value("status", 0), 400) << authority << ": " << result.out;
  }
  const std::string node2 = log("node2");
  EXPECT_NE(node2.find("the authority is not a pod on this node"), std::string::npos) << node2;
  EXPECT_NE(node2.find("not the identity this connection presented"), std::string::npos) << node2;
}

TEST_F(ProxyTest, ClientsWithAForeignOrExpiredCertificateAreRefused) {
  up();
  auto server = echo_server(*lab_, "app1-n2", 8083);
  const std::string foreign_ca = lab_->topology().at("stateDir").get<std::string>() + "/foreign-ca";
  ASSERT_EQ(run({bin_path("zmeshctl"), "ca", "init", "--dir", foreign_ca}).exit_code, 0);
  const std::string hbone = ip("app1-n2") + ":15008", target = ip("app1-n2") + ":8083";
  auto foreign = node_client(hbone, target, mint("intruder", foreign_ca));
  EXPECT_EQ(foreign.exit_code, 3) << foreign.out << foreign.err;
  auto expired = node_client(hbone, target, mint("late", lab_ca_dir(), "0"));
  EXPECT_EQ(expired.exit_code, 3) << expired.out << expired.err;
  const std::string node2 = log("node2");
  EXPECT_NE(node2.find("HBONE from 10.100.0.1"), std::string::npos) << node2;
  EXPECT_GE(count(node2, "TLS handshake failed") + count(node2, "client certificate:"), 2u) << node2;
  EXPECT_NE(node2.find("expired"), std::string::npos) << node2;
}

TEST_F(ProxyTest, TheLinkBetweenNodesCarriesNoApplicationPlaintext) {
  up();
  auto server = echo_server(*lab_, "app1-n2", 8080);
  const std::string pcap = lab_->topology().at("stateDir").get<std::string>() + "/fabric.pcap";
  Process capture({"nsenter", "--net=/run/netns/" + lab_->topology().at("fabricNetns").get<std::string>(), "--",
                   "dumpcap", "-q", "-i", "br0", "-w", pcap},
                  Process::Stderr::Merge);
  // dumpcap says nothing with -q; wait until it has the file open.
  for (int i = 0; i < 100 && !fs::exists(pcap); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 1 << 20), 1 << 20);
  capture.kill(SIGINT);
  capture.wait();
  const std::string bytes = read_file(pcap);
  ASSERT_GT(bytes.size(), 1u << 20) << "the capture must hold the transfer";
  // zm-echo's pattern: any 48 consecutive bytes of it would be application plaintext.
  std::string window;
  for (uint64_t i = 4096; i < 4096 + 48; ++i) window.push_back(static_cast<char>((i * 2654435761u) >> 13));
  EXPECT_EQ(bytes.find(window), std::string::npos) << "application bytes crossed the link in clear";
  auto tls = run({"tshark", "-r", pcap, "-Y", "tls.app_data && tcp.port == 15008", "-T", "fields", "-e", "frame.number"});
  EXPECT_GT(count(tls.out, "\n"), 10u) << "the transfer went as TLS application data to port 15008: " << tls.err;
}

TEST_F(ProxyTest, CertificatesRenewAtHalfLifeWithoutDroppingConnections) {
  up({"--cert-ttl", "4"});
  auto server = echo_server(*lab_, "app1-n2", 8080, {"--connections", "2"});
  // A slow client: 40 writes 100 ms apart, across the renewal at 2 s.
  auto slow = std::make_unique<Process>(lab_->exec(
      "app1-n1", {bin_path("zm-echo"), "send", "--to", ip("app1-n2"), "--port", "8080", "--bytes",
                  std::to_string(40 * 65536), "--pause-ms", "100"}));
  auto line = slow->read_line(std::chrono::seconds(30));
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(slow->wait(), 0) << *line;
  EXPECT_TRUE(nlohmann::json::parse(*line).at("match").get<bool>());
  const std::string node1 = log("node1");
  EXPECT_GE(count(node1, "issued spiffe://cluster.local/ns/default/sa/app1"), 2u) << node1;
  // And a new connection after the renewal works (new certificate, same root).
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 65536), 65536);
}

TEST_F(ProxyTest, SigtermDrainsOpenConnectionsThenExits) {
  up();
  auto server = echo_server(*lab_, "app1-n2", 8080);
  auto slow = std::make_unique<Process>(lab_->exec(
      "app1-n1", {bin_path("zm-echo"), "send", "--to", ip("app1-n2"), "--port", "8080", "--bytes",
                  std::to_string(10 * 65536), "--pause-ms", "100"}));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const pid_t zmeshd = lab_->node("node1").at("zmeshd").at("pid").get<pid_t>();
  ASSERT_EQ(kill(zmeshd, SIGTERM), 0);
  auto line = slow->read_line(std::chrono::seconds(30));
  ASSERT_TRUE(line.has_value());
  EXPECT_TRUE(nlohmann::json::parse(*line).at("match").get<bool>()) << "the open connection finished during drain";
  for (int i = 0; i < 100 && kill(zmeshd, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_NE(kill(zmeshd, 0), 0) << "zmeshd exited after draining";
  EXPECT_NE(log("node1").find("zmeshd: stopped"), std::string::npos) << log("node1");
  // With zmeshd gone, new connections fail closed: refused, never sent around the mesh.
  auto after = echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 1000, {"--connect-timeout-ms", "2000"});
  EXPECT_NE(after.exit_code, 0);
}

}  // namespace
}  // namespace zmesh::test
