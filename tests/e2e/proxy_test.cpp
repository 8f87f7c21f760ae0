// The node proxy end to end: `lab up` runs a zmeshd on each node (one lab CA), pods talk
// through the mesh unchanged, and every byte between the nodes is HBONE over mutual TLS.
//
//   app1-n1 (sa app1), app2-n1 (sa app2) ── node1 zmeshd ══ HBONE :15008 ══ node2 zmeshd ── app1-n2, app2-n2
//                                              (fabric bridge br0 between the nodes: only TLS crosses it)
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "capture.h"
#include "echo.h"
#include "eventually.h"
#include "lab.h"
#include "metrics.h"

namespace zmesh::test {
namespace {

namespace fs = std::filesystem;

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

constexpr const char* kOpened = "istio_tcp_connections_opened_total";
constexpr const char* kClosed = "istio_tcp_connections_closed_total";
constexpr const char* kFailed = "istio_tcp_connections_failed_total";
constexpr const char* kHandshakeFailures = "zmesh_tls_handshake_failures_total";
constexpr const char* kActive = "zmesh_connections_active";
constexpr const char* kPooled = "zmesh_hbone_pool_connections";

class ProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
  }
  void up(std::vector<std::string> zmeshd_args = {}, std::vector<std::string> permissive = {},
          int restart_delay_ms = -1) {
    lab_ = std::make_unique<Lab>(LabOptions{.nodes = 2,
                                            .pods = 2,
                                            .mesh = true,
                                            .zmeshd_args = zmeshd_args,
                                            .permissive = permissive,
                                            .restart_delay_ms = restart_delay_ms});
  }
  pid_t zmeshd_pid(const std::string& node) const { return lab_->node(node).at("zmeshd").at("pid").get<pid_t>(); }
  std::string pin_root(const std::string& node) const { return lab_->node(node).at("bpfRoot"); }
  bool log_shows(const std::string& node, const std::string& needle) const { return lab_->log_shows(node, needle); }
  static void stop(pid_t pid) {
    kill(pid, SIGTERM);
    EXPECT_TRUE(exits(pid)) << "zmeshd " << pid << " did not stop on SIGTERM";
  }
  // argv of a zmeshd for `node` as lab up starts it, with `extra` (and --config, if given, replacing the lab's).
  std::vector<std::string> zmeshd_argv(const std::string& node, std::vector<std::string> extra) const {
    return lab_->zmeshd_command(node, extra);
  }
  std::string ip(const std::string& pod, const char* family = "ip") const { return lab_->pod(pod).at(family); }
  std::string log(const std::string& node) const { return lab_->log(node); }
  Metrics metrics(const std::string& node) const { return Metrics::scrape(*lab_, node); }
  // Until the node's proxy has opened `n` connections (as the source's reporter).
  void await_opened(const std::string& node, double n) const {
    await_metric(*lab_, node, kOpened, {{"reporter", "source"}}, n);
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
  // Without `cert` (empty paths) it presents no client certificate.
  // It trusts `server_roots` (a PEM file; the lab CA's root by default).
  Result node_client(const std::string& connect, const std::string& authority,
                     const std::pair<std::string, std::string>& cert, int bytes = 65536,
                     std::string server_roots = "", const std::string& forwarded = "") {
    if (server_roots.empty()) server_roots = lab_->topology().at("ca").at("cert").get<std::string>();
    std::vector<std::string> command{"node",        source_path("tests/tools/hbone_client.mjs"),
                                     "--connect",   connect,
                                     "--authority", authority,
                                     "--ca",        server_roots,
                                     "--bytes",     std::to_string(bytes)};
    if (!cert.first.empty()) command.insert(command.end(), {"--cert", cert.first, "--key", cert.second});
    if (!forwarded.empty()) command.insert(command.end(), {"--forwarded", forwarded});
    return run(lab_->exec("node1", command));
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
  // Each end counted each connection under the identities on both sides.
  const auto node1 = await_metric(*lab_, "node1", kClosed, connection("destination", "app2-n1", "app1-n1"), 1);
  EXPECT_EQ(node1.sum(kClosed, connection("source", "app1-n1", "app1-n2")), 1) << node1;
  EXPECT_EQ(node1.sum(kClosed, connection("source", "app2-n1", "app1-n2")), 1) << node1;
  const auto node2 = await_metric(*lab_, "node2", kClosed, connection("destination", "app2-n1", "app1-n2"), 1);
  EXPECT_EQ(node2.sum(kClosed, connection("destination", "app1-n1", "app1-n2")), 1)
      << "the server side knows the client's identity: " << node2;
  EXPECT_EQ(node2.sum("zmesh_tls_handshakes_total", {{"side", "server"}}), 2) << "the HBONE peer is node1: " << node2;
  EXPECT_EQ(node1.sum("zmesh_tls_handshakes_total", {{"side", "client"}}), 2)
      << "one TLS connection per (source, destination identity, node): " << node1;
}

TEST_F(ProxyTest, ConcurrentConnectionsShareOnePooledTlsConnectionPerWorker) {
  up({"--workers", "2"});
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
  EXPECT_EQ(metrics("node1").sum("zmesh_tls_handshakes_total", {{"side", "client"}}), 2)
      << "40 streams, one TLS handshake for each of the 2 workers' pools";
  const auto node2 = await_metric(*lab_, "node2", kClosed, {{"reporter", "destination"}}, kClients);
  EXPECT_EQ(node2.sum(kClosed, connection("destination", "app1-n1", "app1-n2")), kClients) << node2;
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
  // Both ends count the failure; an independent HTTP/2 client sees the 503 itself.
  const Labels failed = {{"destination_workload", "app1-n2"}, {"response_flags", "CONNECT"}};
  Labels at_source = failed, at_destination = failed;
  at_source["reporter"] = "source";
  at_destination["reporter"] = "destination";
  EXPECT_EQ(await_metric(*lab_, "node1", kFailed, at_source, 1).sum(kFailed, at_source), 1);
  EXPECT_EQ(await_metric(*lab_, "node2", kFailed, at_destination, 1).sum(kFailed, at_destination), 1);
  auto direct = node_client(ip("app1-n2") + ":15008", ip("app1-n2") + ":9999", mint("tester", lab_ca_dir()));
  EXPECT_EQ(nlohmann::json::parse(direct.out).value("status", 0), 503) << direct.out << direct.err;
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
  const Labels tester = {{"reporter", "destination"},
                         {"source_principal", "spiffe://cluster.local/ns/default/sa/tester"},
                         {"destination_workload", "app1-n2"}};
  EXPECT_EQ(await_metric(*lab_, "node2", kClosed, tester, 1).sum(kClosed, tester), 1) << "counted as the client it was";
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
  // What the operator is told.
  EXPECT_TRUE(log_shows("node2", "the authority is not a pod on this node")) << log("node2");
  EXPECT_TRUE(log_shows("node2", "not the identity this connection presented")) << log("node2");
}

TEST_F(ProxyTest, ClientsWithAForeignExpiredOrNoCertificateAreRefused) {
  up();
  auto server = echo_server(*lab_, "app1-n2", 8083);
  const std::string foreign_ca = lab_->topology().at("stateDir").get<std::string>() + "/foreign-ca";
  ASSERT_EQ(run({bin_path("zmeshctl"), "ca", "init", "--dir", foreign_ca}).exit_code, 0);
  const std::string hbone = ip("app1-n2") + ":15008", target = ip("app1-n2") + ":8083";
  auto foreign = node_client(hbone, target, mint("intruder", foreign_ca));
  EXPECT_EQ(foreign.exit_code, 3) << foreign.out << foreign.err;
  auto expired = node_client(hbone, target, mint("late", lab_ca_dir(), "0"));
  EXPECT_EQ(expired.exit_code, 3) << expired.out << expired.err;
  auto anonymous = node_client(hbone, target, {"", ""});
  EXPECT_EQ(anonymous.exit_code, 3) << anonymous.out << anonymous.err;
  // Counted by reason: all three are certificate failures; the operator is told which.
  const Labels certificate = {{"reason", "certificate"}};
  EXPECT_EQ(await_metric(*lab_, "node2", kHandshakeFailures, certificate, 3).sum(kHandshakeFailures, certificate), 3);
  EXPECT_TRUE(log_shows("node2", "expired")) << log("node2");
}

TEST_F(ProxyTest, TheLinkBetweenNodesCarriesNoApplicationPlaintext) {
  up();
  auto server = echo_server(*lab_, "app1-n2", 8080);
  const std::string pcap = lab_->topology().at("stateDir").get<std::string>() + "/fabric.pcap";
  Capture capture(lab_->topology().at("fabricNetns"), "br0", pcap);
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 1 << 20), 1 << 20);
  capture.stop();
  const std::string bytes = read_file(pcap);
  ASSERT_GT(bytes.size(), 1u << 20) << "the capture must hold the transfer";
  // zm-echo's pattern: any 48 consecutive bytes of it would be application plaintext.
  std::string window;
  for (uint64_t i = 4096; i < 4096 + 48; ++i) window.push_back(static_cast<char>((i * 2654435761u) >> 13));
  EXPECT_EQ(bytes.find(window), std::string::npos) << "application bytes crossed the link in clear";
  EXPECT_GT(capture.count("tls.app_data && tcp.port == 15008"), 10u) << "the transfer went as TLS application data to port 15008";
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
  EXPECT_GE(metrics("node1").sum("zmesh_certificate_renewals_total"), 1) << "renewed while the connection was open";
  // And a new connection after the renewal works (new certificate, same root).
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 65536), 65536);
}

TEST_F(ProxyTest, ACaRotationKeepsOpenConnectionsAndNewOnesUseTheNewRoot) {
  // The test's files (the trust bundle zmeshd reads, the CAs it makes) in a directory of their
  // own, removed also when the test fails.
  const fs::path dir = fs::path("/tmp") / ("zmesh-rotation-" + Lab::unique_name());
  struct RemoveAll {
    fs::path path;
    ~RemoveAll() {
      std::error_code ignored;
      fs::remove_all(path, ignored);
    }
  } remove_dir{dir};
  fs::create_directories(dir);
  auto init_ca = [&](const std::string& name) {
    auto made = run({bin_path("zmeshctl"), "ca", "init", "--dir", (dir / name).string()});
    EXPECT_EQ(made.exit_code, 0) << made.err;
    return (dir / name).string();
  };
  auto write_bundle = [&](const std::string& file, const std::vector<std::string>& ca_dirs) {
    std::ofstream out(dir / "bundle.tmp");
    for (const auto& ca : ca_dirs) out << read_file(ca + "/root-cert.pem");
    out.close();
    fs::rename(dir / "bundle.tmp", file);  // whole, as a Secret update: never half a file
    return file;
  };
  const std::string other = init_ca("other"), bundle = (dir / "bundle.pem").string();
  write_bundle(bundle, {other});  // --trust-bundle names a file: an unrelated root to start with
  up({"--trust-bundle", bundle});
  auto reload_both = [&] {
    for (const char* node : {"node1", "node2"}) {
      auto reloaded = lab_->zmeshctl(node, {"reload"});
      EXPECT_EQ(reloaded.exit_code, 0) << node << ": " << reloaded.out << reloaded.err;
    }
  };
  auto server = echo_server(*lab_, "app1-n2", 8080, {"--connections", "6"});
  // Open across the whole rotation: 60 writes 100 ms apart.
  Process slow(lab_->exec("app1-n1", {bin_path("zm-echo"), "send", "--to", ip("app1-n2"), "--port", "8080",
                                      "--bytes", std::to_string(60 * 65536), "--pause-ms", "100"}));
  await_opened("node1", 1);
  const std::string old_ca = dir / "old";
  fs::copy(lab_ca_dir(), old_ca);
  const std::string new_ca = init_ca("new");
  const std::string hbone = ip("app1-n2") + ":15008", target = ip("app1-n2") + ":8080";
  const std::string either_root = write_bundle((dir / "either.pem").string(), {old_ca, new_ca});

  // 1. Every node trusts the new root before anything is issued from it.
  write_bundle(bundle, {other, new_ca});
  reload_both();
  expect_whole(echo_send(*lab_, "app2-n1", ip("app1-n2"), 8080, 65536), 65536);
  // 2. The CA's files become the new root (a key that does not fit the root is refused, and the
  //    old certificates stay); the old root is still trusted for the peers not yet re-issued.
  fs::copy_file(new_ca + "/root-key.pem", lab_ca_dir() + "/root-key.pem", fs::copy_options::overwrite_existing);
  auto refused = lab_->zmeshctl("node2", {"reload"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE((refused.out + refused.err).find("is not the key of"), std::string::npos) << refused.out << refused.err;
  fs::copy_file(new_ca + "/root-cert.pem", lab_ca_dir() + "/root-cert.pem", fs::copy_options::overwrite_existing);
  write_bundle(bundle, {other, old_ca});
  reload_both();
  expect_whole(echo_send(*lab_, "app2-n1", ip("app1-n2"), 8080, 65536), 65536);
  auto new_leaf = node_client(hbone, target, mint("fresh", new_ca), 4096, new_ca + "/root-cert.pem");
  EXPECT_EQ(new_leaf.exit_code, 0) << "node2 serves a certificate of the new root: " << new_leaf.out << new_leaf.err;
  auto old_leaf = node_client(hbone, target, mint("stale", old_ca), 4096, either_root);
  EXPECT_EQ(old_leaf.exit_code, 0) << "the old root is still trusted: " << old_leaf.out << old_leaf.err;
  // 3. The old root goes: its certificates are refused from now on.
  write_bundle(bundle, {other});
  reload_both();
  expect_whole(echo_send(*lab_, "app2-n1", ip("app1-n2"), 8080, 65536), 65536);
  old_leaf = node_client(hbone, target, mint("stale", old_ca), 4096, either_root);
  EXPECT_EQ(old_leaf.exit_code, 3) << "a certificate of the removed root: " << old_leaf.out << old_leaf.err;

  // The connection opened before the rotation carried every byte.
  auto line = slow.read_line(std::chrono::seconds(30));
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(slow.wait(), 0) << *line;
  EXPECT_TRUE(nlohmann::json::parse(*line).at("match").get<bool>()) << *line;
  const auto node1 = metrics("node1");
  EXPECT_EQ(node1.sum("zmesh_certificate_rotations_total"), 3) << node1;
  EXPECT_GE(node1.sum("zmesh_tls_handshakes_total", {{"side", "client"}}), 4) << "each rotation handshakes again";
  EXPECT_TRUE(log_shows("node2", "rotation refused")) << log("node2");
}

TEST_F(ProxyTest, SigtermDrainsOpenConnectionsThenExits) {
  up();
  auto server = echo_server(*lab_, "app1-n2", 8080);
  auto slow = std::make_unique<Process>(lab_->exec(
      "app1-n1", {bin_path("zm-echo"), "send", "--to", ip("app1-n2"), "--port", "8080", "--bytes",
                  std::to_string(10 * 65536), "--pause-ms", "100"}));
  await_opened("node1", 1);
  const pid_t zmeshd = lab_->node("node1").at("zmeshd").at("pid").get<pid_t>();
  ASSERT_EQ(kill(zmeshd, SIGTERM), 0);
  auto line = slow->read_line(std::chrono::seconds(30));
  ASSERT_TRUE(line.has_value());
  EXPECT_TRUE(nlohmann::json::parse(*line).at("match").get<bool>()) << "the open connection finished during drain";
  EXPECT_TRUE(exits(zmeshd)) << "zmeshd exited after draining";
  EXPECT_TRUE(log_shows("node1", "zmeshd: stopped")) << log("node1");
  // With zmeshd gone, new connections fail closed: refused, never sent around the mesh.
  auto after = echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 1000, {"--connect-timeout-ms", "2000"});
  EXPECT_NE(after.exit_code, 0);
}

TEST_F(ProxyTest, NonTlsClientsAndHttp2GarbageOn15008EndThereAndNothingElse) {
  up();
  auto server = echo_server(*lab_, "app1-n2", 8080);
  const std::string hbone = ip("app1-n2") + ":15008";
  // Plain HTTP to the HBONE port: the TLS handshake fails, the connection is closed.
  auto plain = run(lab_->exec("node1", {"curl", "-sS", "--max-time", "5", "http://" + hbone + "/"}));
  EXPECT_NE(plain.exit_code, 0);
  // TLS with a valid certificate and h2, then bytes that are not HTTP/2: the session ends.
  const auto cert = mint("garbler", lab_ca_dir());
  auto garbage = run(lab_->exec(
      "node1", {"sh", "-c",
                "printf 'this is not an HTTP/2 connection preface at all\\r\\n\\r\\n' | timeout 10 openssl s_client "
                "-quiet -connect \"$0\" -cert \"$1\" -key \"$2\" -CAfile \"$3\" -alpn h2 2>&1; echo exit=$?",
                hbone, cert.first, cert.second, lab_->topology().at("ca").at("cert").get<std::string>()}));
  EXPECT_EQ(garbage.out.find("exit=124"), std::string::npos) << "the server hung up, not the timeout: " << garbage.out;
  const Labels protocol = {{"reason", "protocol"}};
  EXPECT_EQ(await_metric(*lab_, "node2", kHandshakeFailures, protocol, 1).sum(kHandshakeFailures, protocol), 1);
  // The daemon carries on.
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 65536), 65536);
}

TEST_F(ProxyTest, HostileHttp2ClientsEndTheirOwnConnectionsAndNothingElse) {
  up({"--hbone-keepalive-ms", "500"});
  auto server = echo_server(*lab_, "app1-n2", 8080, {"--connections", "2"});
  const auto cert = mint("hostile", lab_ca_dir());
  // h2_abuse.mjs writes the frames by hand; port 8081 has no listener, so every stream that
  // gets through is answered 503 quickly.
  auto abuse = [&](const std::string& mode, int count) {
    auto done = run(lab_->exec(
        "node1", {"node", source_path("tests/tools/h2_abuse.mjs"), "--mode", mode, "--count", std::to_string(count),
                  "--connect", ip("app1-n2") + ":15008", "--authority", ip("app1-n2") + ":8081", "--ca",
                  lab_->topology().at("ca").at("cert").get<std::string>(), "--cert", cert.first, "--key",
                  cert.second}));
    EXPECT_EQ(done.exit_code, 0) << done.out << done.err;
    return nlohmann::json::parse(done.out);
  };
  const pid_t node2 = zmeshd_pid("node2");
  auto fds = [&] {
    return std::distance(fs::directory_iterator("/proc/" + std::to_string(node2) + "/fd"), fs::directory_iterator());
  };
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 65536), 65536);  // the pooled connection is open
  const auto fds_before = fds();

  // More streams at once than the 1000 we advertise: that connection ends (PROTOCOL_ERROR).
  auto flood = abuse("flood", 1500);
  EXPECT_EQ(flood.at("goaway"), 1) << flood;
  EXPECT_NE(flood.value("debug", "").find("max concurrent streams"), std::string::npos) << flood;
  // CONNECT and cancel, 5000 times (CVE-2023-44487): nghttp2's reset limit ends it.
  auto rapid = abuse("rapid-reset", 5000);
  EXPECT_TRUE(rapid.at("closed").get<bool>()) << rapid;
  EXPECT_FALSE(rapid.at("goaway").is_null()) << rapid;
  EXPECT_LT(rapid.at("lastStream").get<int>(), 2 * 5000) << "cut off before all 5000: " << rapid;
  // A header block past our 16 KiB limit: that stream is reset (ENHANCE_YOUR_CALM); one that
  // never ends holds the connection only until the keepalive finds the peer silent.
  auto big = abuse("huge-headers", 40);
  EXPECT_EQ(big.at("refused").value("11", 0), 1) << big;
  EXPECT_TRUE(big.at("closed").get<bool>()) << big;
  // Megabytes of CONTINUATION frames (CVE-2024-27316's shape): the connection ends.
  auto endless = abuse("huge-headers", 4096);
  EXPECT_TRUE(endless.at("closed").get<bool>()) << endless;
  // Half a ClientHello, then FIN: a failed handshake, counted.
  auto truncated = abuse("truncated-tls", 0);
  EXPECT_TRUE(truncated.at("closed").get<bool>()) << truncated;

  // What the operator is told about each.
  for (const char* said : {"ending the connection with [::ffff:10.100.0.1]", "request headers over 16384 bytes, reset",
                           "Too many CONTINUATION frames", "TLS handshake failed: stream truncated"})
    EXPECT_TRUE(log_shows("node2", said)) << said << " in " << log("node2");
  // Nothing else: the daemon lives, every stream it started for them is gone, it carries on.
  EXPECT_EQ(kill(node2, 0), 0) << "zmeshd on node2 is gone";
  const auto settled =
      await_metrics(*lab_, "node2", [&](const Metrics& m) { return m.sum(kActive) == 0 && fds() <= fds_before; });
  EXPECT_EQ(settled.sum(kActive), 0) << settled;
  EXPECT_LE(fds(), fds_before) << "descriptors left behind by the hostile connections";
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 65536), 65536);
}

TEST_F(ProxyTest, SlowlorisIsCutOffOnTheHboneAndControlListeners) {
  up({"--handshake-timeout-ms", "1000"});
  // A TCP connection to :15008 that never starts TLS: closed at the handshake deadline. (A
  // client that is not cut off would be killed by `timeout` instead: exit 124.)
  auto hbone = run(lab_->exec("node1", {"timeout", "10", "bash", "-c", "exec 3<>/dev/tcp/$0/15008 && cat <&3 >/dev/null",
                                        ip("app1-n2")}));
  EXPECT_EQ(hbone.exit_code, 0) << "closed by zmeshd: " << hbone.err;
  const Labels timeout = {{"reason", "timeout"}};
  EXPECT_EQ(await_metric(*lab_, "node2", kHandshakeFailures, timeout, 1).sum(kHandshakeFailures, timeout), 1);
  // A control socket client that sends nothing: cut off at the 5 s request deadline.
  auto control = run({"timeout", "15", "python3", "-c",
                      "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
                      "sys.exit(0 if s.recv(1) == b'' else 1)",
                      lab_->node("node1").at("zmeshd").at("controlSocket").get<std::string>()});
  EXPECT_EQ(control.exit_code, 0) << control.err;
  // The daemon serves as before.
  auto server = echo_server(*lab_, "app1-n2", 8080);
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 4096), 4096);
}

TEST_F(ProxyTest, APeerNodeThatVanishesEndsItsStreamsWithAnErrorAndNothingElse) {
  up({"--hbone-keepalive-ms", "500"});
  auto far = echo_server(*lab_, "app1-n2", 8080);
  auto near = echo_server(*lab_, "app2-n1", 8080);
  Process slow(lab_->exec("app1-n1", {bin_path("zm-echo"), "send", "--to", ip("app1-n2"), "--port", "8080", "--bytes",
                                      std::to_string(100 * 65536), "--pause-ms", "100"}),
               Process::Stderr::Merge);
  await_opened("node1", 1);
  // node2 drops off the fabric: no FIN, no RST, nothing — as a node that lost power.
  ASSERT_EQ(run({"ip", "-n", lab_->topology().at("fabricNetns").get<std::string>(), "link", "set", "n2", "down"})
                .exit_code,
            0);
  std::string seen;
  EXPECT_TRUE(slow.wait_for("Connection reset by peer", &seen).has_value())
      << "the stream failed, and the client was told: " << seen;
  EXPECT_TRUE(log_shows("node1", "not even a PING answer")) << log("node1");
  // Nothing else: a connection on node1 itself is carried as before.
  expect_whole(echo_send(*lab_, "app1-n1", ip("app2-n1"), 8080, 65536), 65536);
}

TEST_F(ProxyTest, SigkillUnderTrafficFailsClosedAndARestartRecovers) {
  up({}, {}, /*restart_delay_ms=*/0);  // no supervisor restart: the gap stays open until `lab restart`
  auto server = echo_server(*lab_, "app1-n2", 8080, {"--connections", "5"});
  auto download = echo_server(*lab_, "app2-n2", 8080, {"--after-eof"});
  // A download: the client sends its 8 MiB, half-closes, then only reads the reply, slowly.
  Process slow(lab_->exec("app1-n1", {bin_path("zm-echo"), "send", "--to", ip("app2-n2"), "--port", "8080", "--bytes",
                                      std::to_string(8 << 20), "--read-pause-ms", "20"}),
               Process::Stderr::Merge);
  ASSERT_TRUE(slow.wait_for("receiving").has_value());
  ASSERT_EQ(kill(zmeshd_pid("node1"), SIGKILL), 0);
  // The client-side zmeshd died: the application sees a reset (exit 1, "reset"), never a clean
  // FIN on a truncated stream (exit 3), which close-delimited protocols would accept.
  std::string said;
  EXPECT_TRUE(slow.wait_for("reset", &said).has_value()) << said;
  EXPECT_EQ(slow.wait(), 1) << said;
  while (server->read_line(std::chrono::milliseconds(1000))) {
  }
  // Redirection stays: a new connection is captured and refused; nothing reaches the server.
  auto refused = echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 1000, {"--connect-timeout-ms", "2000"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_FALSE(server->read_line(std::chrono::milliseconds(1000)).has_value()) << "nothing went around the mesh";
  // Restarted (as a kubelet would restart the pod): it adopts the pins and carries traffic again.
  lab_->restart("node1");
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 65536), 65536);
  EXPECT_TRUE(lab_->wait_ready("node1"));
}

TEST_F(ProxyTest, ACrashedZmeshdIsRestartedAsTheKubeletWouldAndAdoptsItsPins) {
  up();  // the lab's supervisor restarts a crashed zmeshd after 1 s, as the kubelet restarts the pod
  auto server = echo_server(*lab_, "app1-n2", 8080, {"--connections", "3"});
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 65536), 65536);
  const std::string pod_cgroup = lab_->pod("app1-n1").at("cgroup");
  for (int round = 0; round < 2; ++round) {  // the second crash comes back after the doubled delay
    const pid_t crashed = zmeshd_pid("node1");
    ASSERT_EQ(kill(crashed, round == 0 ? SIGKILL : SIGSEGV), 0);
    ASSERT_TRUE(lab_->await_restart("node1", crashed)) << "no new zmeshd on node1 after a crash";
    EXPECT_NE(zmeshd_pid("node1"), crashed);
    // It adopted the pinned programs: each hook once on the pod's cgroup, not once per run.
    EXPECT_EQ(attached_programs(pod_cgroup, BPF_CGROUP_INET4_CONNECT), 1u);
    EXPECT_EQ(attached_programs(pod_cgroup, BPF_CGROUP_SOCK_OPS), 1u);
    expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 65536), 65536);
  }
  // A drain someone asked for (SIGTERM, as when the pod is deleted) is not restarted.
  const pid_t drained = zmeshd_pid("node1");
  stop(drained);
  const std::string supervisor_log = lab_->node("node1").at("zmeshd").at("supervisorLog");
  std::string said;
  eventually([&] {
    said = read_file(supervisor_log);
    return said.find("not restarted") != std::string::npos;
  });
  EXPECT_NE(said.find("exited with status 0\nnot restarted (a requested drain)"), std::string::npos) << said;
  EXPECT_EQ(count(said, "restarting in 1000 ms"), 1u) << said;
  EXPECT_EQ(count(said, "restarting in 2000 ms"), 1u) << "the delay doubles per crash: " << said;
}

TEST_F(ProxyTest, PlaintextFromOutsideTheMeshReachesOnlyPermissivePods) {
  up({}, {"app1-n2"});
  auto permissive = echo_server(*lab_, "app1-n2", 8080);
  auto strict = echo_server(*lab_, "app2-n2", 8080);
  // node1 itself is no mesh workload: its connects are plain TCP, arriving on node2's 15006.
  expect_whole(echo_send(*lab_, "node1", ip("app1-n2"), 8080, 1 << 20), 1 << 20);
  const Labels plaintext = {{"reporter", "destination"}, {"destination_workload", "app1-n2"},
                            {"connection_security_policy", "none"}};
  EXPECT_EQ(await_metric(*lab_, "node2", kClosed, plaintext, 1).sum(kClosed, plaintext), 1) << "carried as plaintext";
  auto refused = echo_send(*lab_, "node1", ip("app2-n2"), 8080, 1000, {"--connect-timeout-ms", "1500"});
  EXPECT_EQ(refused.exit_code, 2) << "plaintext to a STRICT pod is dropped: " << refused.out << refused.err;
}

TEST_F(ProxyTest, AResetCrossesTheMesh) {
  up();
  auto server = echo_server(*lab_, "app1-n2", 8080);
  // 64 MiB cannot all sit in buffers on the way: the client is still sending when it aborts.
  auto sent = echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 64 << 20, {"--abort-after", "1"});
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  auto line = server->read_line(std::chrono::seconds(15));
  ASSERT_TRUE(line.has_value());
  EXPECT_NE(nlohmann::json::parse(*line).at("error"), "") << "the server saw an end, not a reset: " << *line;
}

TEST_F(ProxyTest, BytesAClientNeverReadsGiveTheirWindowBack) {
  up({"--workers", "1"});  // one pool, so that every connection rides the same HBONE window
  // A server that sends 1 MiB to whoever connects, then closes; a client that half-closes,
  // reads nothing, and aborts (RST) once the stream has ended cleanly on both sides. Each such
  // connection leaves up to 1 MiB in node1's stream queue. If those bytes never gave their
  // HTTP/2 window back, 24 of them would exhaust the pooled connection's 16 MiB window and the
  // next transfer over it would stall.
  Process server(lab_->exec("app1-n2", {"python3", "-c", R"(
import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 8090)); s.listen(64)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"x" * (1 << 20))
    c.close()
)"}),
                 Process::Stderr::Merge);
  ASSERT_TRUE(server.wait_for("listening").has_value());
  const std::string abort_client = R"(
import socket, struct, sys, time
for _ in range(24):
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # so the bytes stay queued in zmeshd
    c.connect((sys.argv[1], 8090))
    c.shutdown(socket.SHUT_WR)
    time.sleep(0.3)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
print("done")
)";
  auto aborted = run(lab_->exec("app1-n1", {"python3", "-c", abort_client, ip("app1-n2")}));
  ASSERT_EQ(aborted.exit_code, 0) << aborted.out << aborted.err;
  auto echo = echo_server(*lab_, "app1-n2", 8080);
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 4 << 20), 4 << 20);
  EXPECT_EQ(metrics("node1").sum("zmesh_tls_handshakes_total", {{"side", "client"}}), 1)
      << "the same pooled connection carried it all";
}

TEST_F(ProxyTest, IdlePooledConnectionsAreClosed) {
  up({"--pool-idle-timeout-ms", "500"});
  auto server = echo_server(*lab_, "app1-n2", 8080);
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 65536), 65536);
  const auto idle = await_metrics(*lab_, "node1", [](const Metrics& m) { return m.sum(kPooled) == 0; });
  EXPECT_EQ(idle.sum(kPooled), 0) << "the idle pooled connection was closed: " << idle;
  EXPECT_EQ(idle.sum("zmesh_tls_handshakes_total", {{"side", "client"}}), 1) << "after it had been opened";
}

TEST_F(ProxyTest, ClosedConnectionsLeaveNoFileDescriptorsBehind) {
  up({"--workers", "2"});
  constexpr int kConnections = 30;
  auto server = echo_server(*lab_, "app1-n2", 8080, {"--connections", std::to_string(kConnections + 2)});
  auto fds = [&] {
    size_t n = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/" + std::to_string(zmeshd_pid("node1")) + "/fd"))
      ++n;
    return n;
  };
  // One connection per worker (the lab's zmeshd runs 2): each worker's pooled connection is open now.
  for (int worker = 0; worker < 2; ++worker) expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 1000), 1000);
  const size_t before = fds();
  for (int i = 0; i < kConnections; ++i) ASSERT_EQ(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 1000).exit_code, 0);
  // The client sees its end a moment before zmeshd closes the last sockets: let that settle.
  // Only growth is a leak: `before` may have counted a socket of the first connection that
  // was still closing.
  EXPECT_TRUE(eventually([&] { return fds() <= before; }))
      << "zmeshd's descriptors grew with closed connections: " << fds() << " after, " << before << " before";
}

TEST_F(ProxyTest, AServerWithTheWrongIdentityIsRefused) {
  up();
  auto server = echo_server(*lab_, "app1-n2", 8080);
  // node2 now believes app1-n2 runs as "impostor"; node1 still expects app1.
  std::ifstream in(lab_->topology().at("meshConfig").get<std::string>());
  auto mesh = nlohmann::json::parse(in);
  for (auto& w : mesh["workloads"])
    if (w["name"] == "app1-n2") w["serviceAccount"] = "impostor";
  const std::string changed = lab_->topology().at("stateDir").get<std::string>() + "/impostor.json";
  std::ofstream(changed) << mesh.dump();
  stop(zmeshd_pid("node2"));
  Process node2(zmeshd_argv("node2", {"--config", changed, "--ca-dir", lab_ca_dir()}), Process::Stderr::Merge);
  ASSERT_TRUE(lab_->wait_ready("node2"));
  auto sent = echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 1000);
  EXPECT_NE(sent.exit_code, 0);
  const Labels identity = {{"reason", "identity"}};
  EXPECT_EQ(await_metric(*lab_, "node1", kHandshakeFailures, identity, 1).sum(kHandshakeFailures, identity), 1);
  EXPECT_TRUE(log_shows("node1", "is spiffe://cluster.local/ns/default/sa/impostor, expected "
                                 "spiffe://cluster.local/ns/default/sa/app1"))
      << log("node1");
}

TEST_F(ProxyTest, SameNodeTrafficTakesTheShortCutOnBothHops) {
  up({"--sockmap", "on"});
  auto server = echo_server(*lab_, "app1-n1", 8081);
  constexpr int kBytes = 4 << 20;
  expect_whole(echo_send(*lab_, "app2-n1", ip("app1-n1"), 8081, kBytes), kBytes);
  auto maps = run({bin_path("zmeshctl"), "-o", "json", "maps", "--bpf-root", pin_root("node1")});
  ASSERT_EQ(maps.exit_code, 0) << maps.err;
  const auto counters = nlohmann::json::parse(maps.out).at("counters");
  // client pod <-> proxy and proxy <-> server pod: four sockets in the sockhash.
  EXPECT_GE(counters.at("sockhash_added").get<uint64_t>(), 4u) << counters.dump();
  EXPECT_GE(counters.at("shortcut_bytes").get<uint64_t>(), static_cast<uint64_t>(kBytes)) << counters.dump();
}

TEST_F(ProxyTest, AnExternalCaWithTwoRootsInTheTrustBundle) {
  // CA rotation: node1's workloads have certificates from root A, node2's from root B; both
  // nodes trust A and B. The certificates come from files (an external CA), not the built-in CA.
  lab_ = std::make_unique<Lab>(LabOptions{.nodes = 2, .pods = 2});
  const std::string dir = lab_->topology().at("stateDir");
  for (const std::string root : {"A", "B"})
    ASSERT_EQ(run({bin_path("zmeshctl"), "ca", "init", "--dir", dir + "/ca-" + root}).exit_code, 0);
  std::ofstream(dir + "/bundle.pem") << read_file(dir + "/ca-A/root-cert.pem") << read_file(dir + "/ca-B/root-cert.pem");
  for (const auto& [node, root] : {std::pair{"node1", "A"}, std::pair{"node2", "B"}})
    for (const std::string sa : {"app1", "app2"}) {
      const std::string out = dir + "/certs-" + node + "/default/" + sa;
      fs::create_directories(out);
      ASSERT_EQ(run({bin_path("zmeshctl"), "ca", "issue", "--dir", dir + "/ca-" + root, "--id",
                     "spiffe://cluster.local/ns/default/sa/" + sa, "--cert", out + "/cert-chain.pem", "--key",
                     out + "/key.pem"})
                    .exit_code,
                0);
    }
  std::vector<std::unique_ptr<Process>> daemons;
  for (const std::string node : {"node1", "node2"}) {
    daemons.push_back(std::make_unique<Process>(
        zmeshd_argv(node, {"--cert-dir", dir + "/certs-" + node, "--trust-bundle", dir + "/bundle.pem"}),
        Process::Stderr::Merge));
    ASSERT_TRUE(lab_->wait_ready(node)) << "zmeshd on " << node << " did not become ready";
  }
  auto server = echo_server(*lab_, "app1-n2", 8080);
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 1 << 20), 1 << 20);
}

TEST_F(ProxyTest, AuthorizationPoliciesDecideOnTheDestinationNode) {
  lab_ = std::make_unique<Lab>(LabOptions{.nodes = 2, .pods = 2, .mesh = true, .policies = R"([
    {"name": "deny-app2", "namespace": "default", "action": "DENY", "selector": {"workloads": ["app1-n2"]},
     "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app2"]}}],
                "to": [{"operation": {"ports": [8080]}}]}]},
    {"name": "only-app1", "namespace": "default", "action": "ALLOW", "selector": {"workloads": ["app2-n2"]},
     "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/app1"]}}]}]},
    {"name": "not-that-pod", "namespace": "default", "action": "DENY", "selector": {"workloads": ["app1-n2"]},
     "rules": [{"from": [{"source": {"ipBlocks": ["10.244.1.2/32"]}}], "to": [{"operation": {"ports": [8082]}}]}]}
  ])"});
  auto on_app1 = echo_server(*lab_, "app1-n2", 8080, {"--connections", "2"});
  auto on_app1_8082 = echo_server(*lab_, "app1-n2", 8082);
  auto on_app2 = echo_server(*lab_, "app2-n2", 8080);
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 65536), 65536);
  EXPECT_NE(echo_send(*lab_, "app2-n1", ip("app1-n2"), 8080, 1000).exit_code, 0) << "DENY by principal";
  Labels denied = connection("destination", "app2-n1", "app1-n2");
  denied["response_flags"] = "DENY";
  EXPECT_EQ(await_metric(*lab_, "node2", kFailed, denied, 1).sum(kFailed, denied), 1);
  EXPECT_TRUE(log_shows("node2", "denied by DENY policy default/deny-app2")) << log("node2");
  EXPECT_NE(echo_send(*lab_, "app2-n1", ip("app2-n2"), 8080, 1000).exit_code, 0) << "no ALLOW matched";
  EXPECT_TRUE(log_shows("node2", "no ALLOW policy matched")) << log("node2");
  expect_whole(echo_send(*lab_, "app1-n1", ip("app2-n2"), 8080, 65536), 65536);
  // Same node: node2 decides for its own pods too.
  EXPECT_NE(echo_send(*lab_, "app2-n2", ip("app1-n2"), 8080, 1000).exit_code, 0);
  EXPECT_TRUE(log_shows("node2", "(same node): denied by DENY policy default/deny-app2")) << log("node2");
  // Source addresses survive the trip (forwarded header): app1-n1's address is denied on 8082.
  EXPECT_NE(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8082, 1000).exit_code, 0);
  EXPECT_TRUE(log_shows("node2", "denied by DENY policy default/not-that-pod")) << log("node2");
}

// The `forwarded` header is a claim by the client node: the destination believes an address of
// a known workload only from that workload's identity, parses the header per RFC 7239 (a
// look-alike parameter is not `for`), and refuses what is not RFC 7239. Before, any
// certificate the mesh trusts could claim any address and pass an ALLOW by ipBlocks.
TEST_F(ProxyTest, AForwardedAddressIsBelievedOnlyFromItsOwnWorkload) {
  lab_ = std::make_unique<Lab>(LabOptions{.nodes = 2, .pods = 2, .mesh = true, .policies = R"([
    {"name": "from-app2-n1-only", "namespace": "default", "action": "ALLOW", "selector": {"workloads": ["app2-n2"]},
     "rules": [{"from": [{"source": {"ipBlocks": ["10.244.1.3/32", "fd00:244:1::3/128"]}}]}]}])"});
  auto server = echo_server(*lab_, "app2-n2", 8080, {"--connections", "10"});
  const std::string hbone = ip("app2-n2") + ":15008", authority = ip("app2-n2") + ":8080";
  const auto app1 = mint("app1", lab_ca_dir()), app2 = mint("app2", lab_ca_dir());
  auto status_of = [](const Result& r) { return nlohmann::json::parse(r.out).value("status", 0); };
  // The real thing: app2-n1 reaches app2-n2 through the mesh, its address carried along.
  expect_whole(echo_send(*lab_, "app2-n1", ip("app2-n2"), 8080, 4096), 4096);
  // app2's certificate claiming app2-n1's address: consistent, allowed.
  EXPECT_EQ(status_of(node_client(hbone, authority, app2, 4096, "", "for=\"10.244.1.3\"")), 200);
  EXPECT_EQ(status_of(node_client(hbone, authority, app2, 4096, "", "for=\"[fd00:244:1::3]:4711\"")), 200);
  // app1's certificate claiming app2-n1's address: refused, and said why.
  EXPECT_EQ(status_of(node_client(hbone, authority, app1, 4096, "", "for=\"10.244.1.3\"")), 401);
  EXPECT_TRUE(log_shows("node2", "forwarded for=10.244.1.3 is workload default/app2-n1")) << log("node2");
  EXPECT_EQ(status_of(node_client(hbone, authority, app1, 4096, "", "for=10.244.1.3;proto=https")), 401);
  // Look-alikes are not `for`: the source is then the client node itself, which no rule allows.
  EXPECT_EQ(status_of(node_client(hbone, authority, app2, 4096, "", "xfor=\"10.244.1.3\"")), 401);
  EXPECT_EQ(status_of(node_client(hbone, authority, app2, 4096, "", "by=\"10.244.1.3\"")), 401);
  EXPECT_EQ(status_of(node_client(hbone, authority, app2, 4096, "", "for=\"10.9.9.9\", for=\"10.244.1.3\"")), 401)
      << "only the first element (nearest the client) counts";
  // Not RFC 7239: refused as malformed.
  for (const std::string bad : {"for=\"10.244.1.3", "for=10.244.1.3;for=10.244.1.4", "for", "for=not-an-ip",
                                "for=\"[fd00::3\""}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(status_of(node_client(hbone, authority, app2, 4096, "", bad)), 400);
  }
  // What the pod sees (app1-n2, no policy): the claimed address when the certificate proves
  // its workload; else, whatever policies matched, the client node's own address, never an
  // address zmeshd would spoof for the node's say-so.
  auto open_pod = echo_server(*lab_, "app1-n2", 8080, {"--connections", "10"});
  const std::string hbone1 = ip("app1-n2") + ":15008", authority1 = ip("app1-n2") + ":8080";
  for (const auto& [claim, seen] : {std::pair{"for=\"10.244.1.3\"", std::string("10.244.1.3")},
                                    std::pair{"for=\"169.254.169.254\"", lab_->node("node1").at("ip").get<std::string>()},
                                    std::pair{"for=\"10.100.0.2\"", lab_->node("node1").at("ip").get<std::string>()}}) {
    SCOPED_TRACE(claim);
    EXPECT_EQ(status_of(node_client(hbone1, authority1, app2, 4096, "", claim)), 200);
    const auto line = open_pod->read_line(std::chrono::seconds(10));
    ASSERT_TRUE(line.has_value());
    EXPECT_EQ(nlohmann::json::parse(*line).at("peer").get<std::string>().rfind(seen + ":", 0), 0u) << *line;
  }
}

TEST_F(ProxyTest, ServicesSpreadOverEndpointsAndSkipFailedOnes) {
  up();
  // Service app1 (10.96.0.1:80 -> 8080) has endpoints app1-n1 and app1-n2.
  auto n1 = echo_server(*lab_, "app1-n1", 8080, {"--connections", "10"});
  auto n2 = echo_server(*lab_, "app1-n2", 8080, {"--connections", "10"});
  for (int i = 0; i < 6; ++i) expect_whole(echo_send(*lab_, "app2-n1", "10.96.0.1", 80, 4096), 4096);
  // Each server reports a connection before the client sees its end, so all six are reported.
  int on_n1 = 0, on_n2 = 0;
  while (n1->read_line(std::chrono::milliseconds(500))) ++on_n1;
  while (n2->read_line(std::chrono::milliseconds(500))) ++on_n2;
  EXPECT_EQ(on_n1, 3) << "round-robin: three each";
  EXPECT_EQ(on_n2, 3) << "round-robin: three each";
  // IPv6 VIP too.
  expect_whole(echo_send(*lab_, "app2-n1", "fd00:96::1", 80, 4096), 4096);
  // app1-n2's server goes away: every connection still succeeds, on app1-n1.
  n2.reset();
  for (int i = 0; i < 4; ++i) expect_whole(echo_send(*lab_, "app2-n1", "10.96.0.1", 80, 4096), 4096);
  EXPECT_TRUE(log_shows("node1", "node node2 answered 503")) << log("node1");
  // A port the service does not have, and a service whose endpoints all fail: clean refusals.
  EXPECT_NE(echo_send(*lab_, "app2-n1", "10.96.0.1", 81, 100).exit_code, 0);
  EXPECT_TRUE(log_shows("node1", "service default/app1 has no port 81")) << log("node1");
  EXPECT_NE(echo_send(*lab_, "app1-n1", "10.96.0.2", 80, 100).exit_code, 0) << "nothing listens behind app2";
  EXPECT_TRUE(log_shows("node1", "every endpoint failed")) << log("node1");
}

TEST_F(ProxyTest, AdminEndpointsAnswerWithWhatHappened) {
  up();
  auto server = echo_server(*lab_, "app1-n2", 8080);
  expect_whole(echo_send(*lab_, "app1-n1", ip("app1-n2"), 8080, 65536), 65536);
  const auto& zmeshd = lab_->node("node1").at("zmeshd");
  auto get = [&](const std::string& where, const std::string& url) {
    return run(lab_->exec(where, {"curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", url}));
  };
  // Readiness and metrics from another node; admin only on the node's loopback.
  auto ready = get("node2", "http://" + zmeshd.at("readiness").get<std::string>() + "/healthz/ready");
  EXPECT_EQ(ready.out, "ready\n\n200") << ready.err;
  auto metrics = get("node2", "http://" + zmeshd.at("metrics").get<std::string>() + "/metrics");
  EXPECT_NE(metrics.out.find("zmesh_tls_handshakes_total{side=\"client\"} 1\n"), std::string::npos) << metrics.out;
  EXPECT_NE(metrics.out.find("zmesh_datapath_events_total{event=\"connect_redirected\"} 1\n"), std::string::npos)
      << metrics.out;
  EXPECT_NE(metrics.out.find("# TYPE zmesh_connections_active gauge"), std::string::npos);
  auto stats = get("node1", "http://" + zmeshd.at("admin").get<std::string>() + "/stats");
  auto body = nlohmann::json::parse(stats.out.substr(0, stats.out.rfind('\n')));
  EXPECT_EQ(body.at("proxy").at("outboundAccepted"), 1);
  EXPECT_EQ(body.at("kernel").at("sockops_orig_moved"), 1);
  auto dump = get("node1", "http://127.0.0.1:15000/config_dump");
  auto config = nlohmann::json::parse(dump.out.substr(0, dump.out.rfind('\n')));
  EXPECT_EQ(config.at("workloads").size(), 4u);
  EXPECT_EQ(config.at("status").at("node"), "node1");
  EXPECT_EQ(config.at("status").at("generation"), 1);
  EXPECT_EQ(config.at("certificates").size(), 2u) << "app1 and app2 on node1";
  const auto missing = get("node1", "http://127.0.0.1:15000/nope").out;
  EXPECT_EQ(missing.substr(missing.rfind('\n') + 1), "404");
  auto from_outside = get("node2", "http://10.100.0.1:15000/stats");
  EXPECT_NE(from_outside.exit_code, 0) << "the admin port answers only on the node's loopback";
}

}  // namespace
}  // namespace zmesh::test
