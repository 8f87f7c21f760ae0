// zmesh fed by istiod (issue 16), tested against a server that is not ours: the fake istiod of
// tests/tools/fake_istiod.mjs (Node.js, @grpc/grpc-js, our .proto files), running on the lab's
// control-plane address, serving what the lab's topology says and signing CSRs with a test CA.
// The lab has no mesh config: the pods are enrolled as the CNI plugin enrolls them without a
// service account, and take identity, services and policies from xDS.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cni.h"
#include "echo.h"
#include "eventually.h"
#include "lab.h"
#include "istiod.h"
#include "metrics.h"

namespace zmesh::test {
namespace {

using nlohmann::json;
constexpr const char* kAddress = "type.googleapis.com/istio.workload.Address";
constexpr const char* kAuthorization = "type.googleapis.com/istio.security.Authorization";

// A directory of this test's own: the test CA, istiod's certificate, the token, the scenario
// and the server's log. Removed at the end.
struct Dir {
  std::filesystem::path path = "/tmp/zmesh-xds-" + Lab::unique_name();
  Dir() { std::filesystem::create_directories(path); }
  ~Dir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

void openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto r = run(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

// A root CA `name`.pem / `name`.key.
void make_root(const Dir& dir, const std::string& name) {
  openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
           "/O=zmesh test/CN=" + name, "-keyout", dir / (name + ".key"), "-out", dir / (name + ".pem"), "-addext",
           "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
}

// A serving certificate `name`.pem / `name`.key for `ip`, signed by the root `ca`.
void make_server_cert(const Dir& dir, const std::string& name, const std::string& ca, const std::string& ip) {
  openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=istiod", "-keyout",
           dir / (name + ".key"), "-out", dir / (name + ".csr")});
  std::ofstream(dir / (name + ".cnf")) << "subjectAltName=IP:" << ip << ",DNS:istiod.istio-system.svc\n";
  openssl({"x509", "-req", "-in", dir / (name + ".csr"), "-CA", dir / (ca + ".pem"), "-CAkey", dir / (ca + ".key"),
           "-CAcreateserial", "-days", "2", "-extfile", dir / (name + ".cnf"), "-out", dir / (name + ".pem")});
}

// A workload certificate `name`.pem / `name`.key for the SPIFFE id `id`, signed by the root `ca`
// (what a waypoint pod holds from istiod's CA).
void make_workload_cert(const Dir& dir, const std::string& name, const std::string& ca, const std::string& id) {
  openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/O=zmesh test", "-keyout",
           dir / (name + ".key"), "-out", dir / (name + ".csr")});
  std::ofstream(dir / (name + ".cnf")) << "subjectAltName=critical,URI:" << id
                                       << "\nbasicConstraints=critical,CA:FALSE\n"
                                          "keyUsage=critical,digitalSignature,keyEncipherment\n"
                                          "extendedKeyUsage=serverAuth,clientAuth\n";
  openssl({"x509", "-req", "-in", dir / (name + ".csr"), "-CA", dir / (ca + ".pem"), "-CAkey", dir / (ca + ".key"),
           "-CAcreateserial", "-days", "2", "-extfile", dir / (name + ".cnf"), "-out", dir / (name + ".pem")});
}

// The mesh root and istiod's serving certificate for the lab's control-plane address.
void make_pki(const Dir& dir, const std::string& ip) {
  make_root(dir, "ca");
  make_server_cert(dir, "istiod", "ca", ip);
}

void write_atomically(const std::string& path, const json& j) {
  std::ofstream(path + ".tmp") << j.dump(2);
  std::filesystem::rename(path + ".tmp", path);
}

// What istiod would serve for the lab: every pod a Workload (HBONE, its node, its service
// account appP), every service a Service with its VIPs, the pods of its account its endpoints.
json scenario_of(const json& topology, const std::string& token) {
  json addresses = json::array();
  for (const auto& pod : topology.at("pods")) {
    const std::string sa = pod.at("serviceAccount");
    json w = {{"uid", pod.at("uid")},
              {"name", pod.at("name")},
              {"namespace", pod.at("namespace")},
              {"addresses", {pod.at("ip"), pod.at("ip6")}},
              {"node", pod.at("node")},
              {"service_account", sa},
              {"trust_domain", "cluster.local"},
              {"tunnel_protocol", "HBONE"},
              {"canonical_name", sa},
              {"canonical_revision", "v1"},
              {"cluster_id", "Kubernetes"},
              {"workload_name", sa},
              {"services", {{"default/" + sa + ".default.svc.cluster.local", {{"ports", {{{"service_port", 80}, {"target_port", 8080}}}}}}}}};
    addresses.push_back({{"name", pod.at("uid")}, {"version", "1"}, {"address", {{"workload", w}}}});
  }
  for (const auto& s : topology.at("services")) {
    json vips = json::array();
    for (const auto& vip : s.at("vips")) vips.push_back({{"network", ""}, {"address", vip}});
    json svc = {{"name", s.at("name")},
                {"namespace", s.at("namespace")},
                {"hostname", s.at("hostname")},
                {"addresses", vips},
                {"ports", {{{"service_port", 80}, {"target_port", 8080}}}}};
    addresses.push_back({{"name", "default/" + s.at("hostname").get<std::string>()}, {"version", "1"},
                         {"address", {{"service", svc}}}});
  }
  return {{"resources", {{kAddress, addresses}, {kAuthorization, json::array()}}}, {"requireToken", token}};
}

// The server's log, one JSON object per line.
std::vector<json> server_log(const std::string& path) {
  std::vector<json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

class XdsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    make_pki(dir_, kControlPlane);
    if (HasFatalFailure()) return;
    std::ofstream(dir_ / "token") << "token-1\n";
    LabOptions options;
    customize(options);
    options.mesh = true;
    options.xds_address = std::string(kControlPlane) + ":15012";
    options.xds_root_cert = dir_ / "ca.pem";
    options.xds_token = dir_ / "token";
    lab_ = std::make_unique<Lab>(options);
    ASSERT_EQ(lab_->topology().at("controlPlane"), kControlPlane);
    scenario_ = scenario_of(lab_->topology(), "token-1");
    write_atomically(dir_ / "scenario.json", scenario_);
  }
  virtual void customize(LabOptions&) {}
  void TearDown() override {
    istiod_.reset();
    lab_.reset();
  }

  // The fake istiod on the control-plane address, serving with the certificate `cert`.
  void start_istiod(const std::string& cert = "istiod") {
    istiod_ = std::make_unique<Process>(
        lab_->exec("fabric", {"node", source_path("tests/tools/fake_istiod.mjs"), "--listen",
                              std::string(kControlPlane) + ":15012", "--tls-cert", dir_ / (cert + ".pem"), "--tls-key",
                              dir_ / (cert + ".key"), "--ca-cert", dir_ / "ca.pem", "--ca-key", dir_ / "ca.key",
                              "--scenario", dir_ / "scenario.json", "--log", dir_ / "istiod.log"}),
        Process::Stderr::Merge);
    ASSERT_TRUE(istiod_->wait_for("fake-istiod listening")) << "the fake istiod did not start";
  }
  std::vector<json> events(const std::string& kind) const {
    std::vector<json> out;
    for (auto& e : server_log(dir_ / "istiod.log"))
      if (e.value("event", "") == kind) out.push_back(e);
    return out;
  }
  void push() { write_atomically(dir_ / "scenario.json", scenario_); }

  static constexpr const char* kControlPlane = "10.100.0.250";
  Dir dir_;
  std::unique_ptr<Lab> lab_;
  std::unique_ptr<Process> istiod_;
  json scenario_;
};

TEST_F(XdsTest, PodsWithoutServiceAccountsGetIdentityCertificatesAndPoliciesFromIstiod) {
  // Before any server: captured, fail closed, and not ready.
  const std::string target = lab_->pod("app1-n2").at("ip");
  EXPECT_FALSE(lab_->wait_ready("node1", 1)) << "ready with no xDS state";
  auto server = echo_server(*lab_, "app1-n2", 8080, {"--connections", "100"});
  EXPECT_NE(echo_send(*lab_, "app1-n1", target, 8080, 1000).exit_code, 0) << "traffic before the pod has an identity";
  for (const auto& w : json::parse(lab_->zmeshctl("node1", {"workloads"}).out))
    EXPECT_TRUE(w.at("identity").is_null()) << "an identity before istiod said one: " << w.dump();

  start_istiod();
  ASSERT_TRUE(lab_->wait_ready("node1", 30)) << lab_->log("node1");
  ASSERT_TRUE(lab_->wait_ready("node2", 30)) << lab_->log("node2");

  // Cross-node and same-node, and a service VIP, over HBONE with istiod's certificates.
  EXPECT_EQ(echo_send(*lab_, "app1-n1", target, 8080).exit_code, 0) << lab_->log("node1");
  EXPECT_EQ(echo_send(*lab_, "app2-n2", target, 8080).exit_code, 0) << lab_->log("node2");
  EXPECT_EQ(echo_send(*lab_, "app2-n1", "10.96.0.1", 80).exit_code, 0) << lab_->log("node1");
  const auto csrs = events("csr");
  ASSERT_FALSE(csrs.empty());
  std::set<std::string> identities;
  for (const auto& c : csrs) {
    EXPECT_TRUE(c.at("ok").get<bool>()) << c.dump();
    EXPECT_EQ(c.at("authorization"), "Bearer token-1");
    identities.insert(c.at("identity").get<std::string>());
  }
  EXPECT_TRUE(identities.contains("spiffe://cluster.local/ns/default/sa/app1"));
  EXPECT_TRUE(identities.contains("spiffe://cluster.local/ns/default/sa/app2"));
  for (const auto& w : json::parse(lab_->zmeshctl("node1", {"workloads"}).out)) {
    const bool here = w.at("node") == "node1";
    EXPECT_EQ(w.at("source"), here ? "xds+cni" : "xds") << w.dump();
    EXPECT_EQ(w.at("enrolledHere"), here) << w.dump();
    EXPECT_EQ(w.at("identity"), "spiffe://cluster.local/ns/default/sa/" + w.at("canonicalName").get<std::string>());
  }

  // What zmeshctl status and the metrics say of the stream.
  const json status = json::parse(lab_->zmeshctl("node1", {"status"}).out);
  ASSERT_TRUE(status.contains("xdsStream")) << status.dump();
  EXPECT_EQ(status["xdsStream"]["connected"], true) << status.dump();
  EXPECT_GE(status["xdsStream"]["types"]["Address"]["applied"].get<uint64_t>(), 1u) << status.dump();
  EXPECT_EQ(status["xdsStream"]["types"]["Address"]["resources"].get<uint64_t>(), 6u) << "4 pods and 2 services";
  EXPECT_EQ(status["xds"]["workloads"], 4);
  const auto metrics = Metrics::scrape(*lab_, "node1");
  EXPECT_EQ(metrics.sum("zmesh_xds_connected", {}), 1);
  EXPECT_EQ(metrics.sum("zmesh_xds_resources", {{"type", "Address"}}), 6);
  EXPECT_EQ(metrics.sum("zmesh_certificate_fetch_failures_total", {}), 0);
  // The stream and the CA are the module's (istiod.h), loaded because istiod feeds this zmeshd.
  const std::string mapped = read_file("/proc/" + std::to_string(lab_->node("node1").at("zmeshd").at("pid").get<int>()) + "/maps");
  EXPECT_NE(mapped.find("/lib/zmesh/zmesh-istiod.so"), std::string::npos);
  EXPECT_NE(mapped.find("libgrpc"), std::string::npos);
  // Istio's labels as ztunnel fills them, from istiod's canonical names, revisions and cluster:
  // app1-n1 to app1-n2 across nodes, as node1 (the source's) reports it.
  EXPECT_GE(metrics.sum("istio_tcp_connections_opened_total",
                        {{"reporter", "source"}, {"source_canonical_service", "app1"}, {"source_canonical_revision", "v1"},
                         {"source_app", "app1"}, {"source_version", "v1"}, {"source_cluster", "Kubernetes"},
                         {"destination_canonical_service", "app1"}, {"destination_version", "v1"},
                         {"destination_cluster", "Kubernetes"}, {"destination_service_namespace", "default"},
                         {"request_protocol", "tcp"}}),
            1)
      << metrics.text();

  // The Node and the subscriptions are ztunnel's.
  bool saw_node = false;
  for (const auto& r : events("request"))
    if (r.contains("node") && r["node"].is_object()) {
      saw_node = true;
      EXPECT_EQ(r["node"]["id"].get<std::string>().rfind("ztunnel~", 0), 0u) << r.dump();
      EXPECT_TRUE(r["node"]["metadata"].contains("NODE_NAME")) << r.dump();
      EXPECT_TRUE(r["node"]["metadata"].contains("CLUSTER_ID")) << r.dump();
    }
  EXPECT_TRUE(saw_node);

  // A DENY from istiod: app1's pods refuse new connections from app2's, and close the open one.
  Process held(lab_->exec("app2-n1", {bin_path("zm-echo"), "send", "--to", target, "--port", "8080", "--bytes",
                                       "1000000", "--pause-ms", "50"}),
               Process::Stderr::Merge);
  ASSERT_TRUE(eventually([&] {
    const json s = stats(*lab_, "node2");
    return s.is_object() && s.at("proxy").at("active").get<uint64_t>() >= 1;
  }));
  scenario_["resources"][kAuthorization].push_back(
      {{"name", "default/deny-app2"},
       {"version", "1"},
       {"authorization",
        {{"name", "deny-app2"},
         {"namespace", "default"},
         {"scope", "NAMESPACE"},
         {"action", "DENY"},
         {"rules", {{{"clauses", {{{"matches", {{{"principals", {{{"exact", "cluster.local/ns/default/sa/app2"}}}}}}}}}}}}}}}});
  // And in the same push, two bad resources: NACKed with their reasons, the rest applied.
  scenario_["resources"][kAddress].push_back({{"name", "garbage"}, {"version", "1"}, {"raw", "////"}});
  json bad_ip = scenario_["resources"][kAddress][0];
  bad_ip["name"] = "Kubernetes//Pod/default/bad-ip";
  bad_ip["address"]["workload"]["uid"] = "Kubernetes//Pod/default/bad-ip";
  bad_ip["address"]["workload"]["name"] = "bad-ip";
  bad_ip["address"]["workload"]["addresses"] = {"b64:AQIDBAU="};  // 5 bytes
  scenario_["resources"][kAddress].push_back(bad_ip);
  push();
  ASSERT_TRUE(eventually([&] {
    return lab_->zmeshctl("node2", {"policies"}).out.find("deny-app2") != std::string::npos;
  })) << lab_->log("node2");
  EXPECT_NE(held.wait(), 0) << "the open connection outlived the DENY";
  EXPECT_NE(echo_send(*lab_, "app2-n1", target, 8080, 1000).exit_code, 0) << "app2 still reaches app1";
  EXPECT_EQ(echo_send(*lab_, "app1-n1", target, 8080).exit_code, 0) << "the DENY names app2 only";
  ASSERT_TRUE(eventually([&] {
    for (const auto& r : events("request"))
      if (r.value("kind", "") == "nack") return true;
    return false;
  }));
  std::string nack;
  for (const auto& r : events("request"))
    if (r.value("kind", "") == "nack") nack = r["error_detail"]["message"];
  EXPECT_NE(nack.find("garbage: is not a valid istio.workload.Address"), std::string::npos) << nack;
  EXPECT_NE(nack.find("bad-ip: addresses[0]: 5 bytes"), std::string::npos) << nack;

  // A removed workload leaves the kernel's destinations; the DENY removed, app2 comes back.
  scenario_["resources"][kAuthorization] = json::array();
  const std::string gone_ip = lab_->pod("app2-n2").at("ip");
  auto& addresses = scenario_["resources"][kAddress];
  for (size_t i = 0; i < addresses.size(); ++i)
    if (addresses[i]["name"] == "Kubernetes//Pod/default/app2-n2" || addresses[i]["name"] == "garbage" ||
        addresses[i]["name"] == "Kubernetes//Pod/default/bad-ip")
      addresses.erase(i--);
  push();
  ASSERT_TRUE(eventually([&] {
    const auto maps = lab_->zmeshctl("node1", {"maps"});
    return maps.out.find(gone_ip) == std::string::npos;
  })) << lab_->zmeshctl("node1", {"maps"}).out;
  EXPECT_EQ(echo_send(*lab_, "app2-n1", target, 8080).exit_code, 0) << lab_->log("node1");

  // A destination behind a waypoint that has no address is refused, not reached around the
  // waypoint's policies (XdsWaypointTest has waypoints that are there).
  for (auto& a : addresses)
    if (a["name"] == "Kubernetes//Pod/default/app1-n2") {
      a["version"] = "2";  // istiod sends what changed: a new version
      a["address"]["workload"]["waypoint"] = {{"address", {{"network", ""}, {"address", "10.96.0.99"}}},
                                              {"hbone_mtls_port", 15008}};
    }
  push();
  ASSERT_TRUE(eventually([&] {
    for (const auto& w : json::parse(lab_->zmeshctl("node1", {"workloads"}).out))
      if (w.at("name") == "app1-n2" && w.contains("waypoint")) return true;
    return false;
  }));
  EXPECT_NE(echo_send(*lab_, "app1-n1", target, 8080, 1000).exit_code, 0) << "reached around its waypoint";
  EXPECT_TRUE(lab_->log_shows("node1", "is behind the waypoint 10.96.0.99:15008"));
  for (auto& a : addresses)
    if (a["name"] == "Kubernetes//Pod/default/app1-n2") {
      a["version"] = "3";
      a["address"]["workload"].erase("waypoint");
    }
  push();
  ASSERT_TRUE(eventually([&] { return echo_send(*lab_, "app1-n1", target, 8080, 1000).exit_code == 0; }));

  // An ALLOW by namespace: a namespace no pod is in leaves app1's pods unreachable; their own
  // namespace lets them be reached again.
  auto allow_from = [&](const std::string& ns, const std::string& version) {
    scenario_["resources"][kAuthorization] = json::array(
        {{{"name", "default/allow-ns"},
          {"version", version},
          {"authorization",
           {{"name", "allow-ns"},
            {"namespace", "default"},
            {"scope", "NAMESPACE"},
            {"action", "ALLOW"},
            {"rules", {{{"clauses", {{{"matches", {{{"namespaces", {{{"exact", ns}}}}}}}}}}}}}}}}});
    push();
  };
  allow_from("elsewhere", "1");
  ASSERT_TRUE(eventually([&] { return echo_send(*lab_, "app1-n1", target, 8080, 1000).exit_code != 0; }))
      << "an ALLOW for another namespace let default's pods in";
  allow_from("default", "2");
  ASSERT_TRUE(eventually([&] { return echo_send(*lab_, "app1-n1", target, 8080, 1000).exit_code == 0; }))
      << lab_->log("node2");

  // A pod enrolled through the CNI chain as kubelet calls it, with no service account: captured
  // and refused until its Workload comes, then with that Workload's identity.
  ASSERT_TRUE(std::filesystem::exists(std::string(kCniPath) + "/ptp")) << "scripts/install-deps.sh installs the CNI plugins";
  const CniPod pod = cni_sandbox(*lab_, "app91-n1", "cni-pod");
  const std::string args = cni_k8s_args("cni-pod", "default", "");
  const auto ptp = cni_plugin(*lab_, "ptp", "ADD", pod, cni_ptp_conf(*lab_), args);
  ASSERT_EQ(ptp.exit_code, 0) << ptp.err;
  const json prev = json::parse(ptp.out);
  const json cni_conf = {{"cniVersion", "1.0.0"},     {"name", "lab"},
                         {"type", "zmesh-cni"},       {"socket", lab_->node("node1").at("zmeshd").at("controlSocket")},
                         {"identityFromXds", true},   {"prevResult", prev}};
  const auto added = cni_plugin(*lab_, "zmesh-cni", "ADD", pod, cni_conf, args);
  ASSERT_EQ(added.exit_code, 0) << added.out << added.err;
  const std::string cni_ip = prev.at("ips").at(0).at("address").get<std::string>().substr(
      0, prev.at("ips").at(0).at("address").get<std::string>().find('/'));
  auto identity_of_cni_pod = [&] {
    for (const auto& w : json::parse(lab_->zmeshctl("node1", {"workloads"}).out))
      if (w.at("name") == "cni-pod") return w.at("identity");
    return json("(not listed)");
  };
  EXPECT_TRUE(identity_of_cni_pod().is_null()) << identity_of_cni_pod();
  const std::vector<std::string> send_from_pod{bin_path("zm-echo"), "send", "--to", target, "--port", "8080", "--bytes", "4096"};
  EXPECT_NE(run(in_cni_pod(pod, send_from_pod)).exit_code, 0) << "a pod without an identity reached a pod";
  EXPECT_TRUE(lab_->log_shows("node1", "the source's identity is not known yet"));
  json cni_workload = {{"uid", "Kubernetes//Pod/default/cni-pod"}, {"name", "cni-pod"},
                       {"namespace", "default"},                    {"addresses", {cni_ip}},
                       {"node", "node1"},                           {"service_account", "cni-sa"},
                       {"tunnel_protocol", "HBONE"}};
  addresses.push_back({{"name", "Kubernetes//Pod/default/cni-pod"}, {"version", "1"},
                       {"address", {{"workload", cni_workload}}}});
  push();
  ASSERT_TRUE(eventually([&] { return identity_of_cni_pod() == "spiffe://cluster.local/ns/default/sa/cni-sa"; }))
      << identity_of_cni_pod();
  const auto sent = run(in_cni_pod(pod, send_from_pod));
  EXPECT_EQ(sent.exit_code, 0) << sent.out << sent.err << lab_->log("node1");
  EXPECT_EQ(cni_plugin(*lab_, "zmesh-cni", "DEL", pod, cni_conf, args).exit_code, 0);
  EXPECT_EQ(cni_plugin(*lab_, "ptp", "DEL", pod, cni_ptp_conf(*lab_), args).exit_code, 0);

  // istiod killed: traffic keeps flowing on what zmeshd has; back, it resyncs with what
  // zmeshd holds (initial_resource_versions), and a rotated token is what it sends.
  istiod_.reset();
  EXPECT_EQ(echo_send(*lab_, "app1-n1", target, 8080).exit_code, 0) << "fail static";
  EXPECT_TRUE(lab_->wait_ready("node1", 1));
  std::ofstream(dir_ / "token.new") << "token-2\n";
  std::filesystem::rename(dir_ / "token.new", dir_ / "token");
  scenario_["requireToken"] = "token-2";
  push();
  const size_t opened_before = events("stream-open").size();
  start_istiod();
  ASSERT_TRUE(eventually([&] {
    for (const auto& r : events("request"))
      if (r.contains("initial_resource_versions") && r["initial_resource_versions"].contains("Kubernetes//Pod/default/app1-n1"))
        return true;
    return false;
  }, std::chrono::seconds(40))) << lab_->log("node1");
  const auto opened = events("stream-open");
  ASSERT_GT(opened.size(), opened_before);
  EXPECT_EQ(opened.back()["metadata"]["authorization"], "Bearer token-2");
  EXPECT_EQ(echo_send(*lab_, "app1-n1", target, 8080).exit_code, 0);
}

// Only istiod is believed: a server whose certificate does not chain to the mesh root, or is
// not for istiod's address, gets no stream (and no token), and zmeshd stays not ready; a
// certificate of istiod's CA for another identity than asked is refused; istiod, once right,
// is taken.
TEST_F(XdsTest, AServerThatIsNotIstiodIsRefused) {
  make_root(dir_, "other-root");
  make_server_cert(dir_, "impostor", "other-root", kControlPlane);
  make_server_cert(dir_, "elsewhere", "ca", "10.100.0.251");  // our root, another address
  for (const std::string cert : {"impostor", "elsewhere"}) {
    SCOPED_TRACE(cert);
    const size_t logged = lab_->log("node1").size();
    start_istiod(cert);
    // What zmeshd logged since this server started says why it was refused (gRPC's TLS text).
    const auto refused = [&] {
      std::string since = lab_->log("node1");
      since.erase(0, std::min(logged, since.size()));
      std::transform(since.begin(), since.end(), since.begin(), [](unsigned char c) { return std::tolower(c); });
      return since.find("handshake") != std::string::npos || since.find("certificate") != std::string::npos ||
             since.find("peer name") != std::string::npos;
    };
    EXPECT_TRUE(eventually(refused, std::chrono::seconds(30))) << lab_->log("node1");
    EXPECT_FALSE(lab_->wait_ready("node1", 1));
    EXPECT_TRUE(events("stream-open").empty()) << "a stream (with the token) reached a server that is not istiod";
    istiod_.reset();
  }
  // istiod itself, but its CA signs another identity than the one asked for (a compromised or
  // buggy CA): the certificates are refused, so is the change that needed them, and zmeshd
  // stays not ready rather than serve a pod as someone else.
  scenario_["ca"] = {{"signAs", "spiffe://cluster.local/ns/kube-system/sa/admin"}};
  push();
  start_istiod();
  EXPECT_TRUE(lab_->log_shows("node1", "not for the identity asked for")) << lab_->log("node1");
  EXPECT_FALSE(lab_->wait_ready("node1", 1));
  // The CA mended and the workloads sent again (new versions): taken.
  scenario_.erase("ca");
  for (auto& a : scenario_["resources"][kAddress]) a["version"] = "2";
  push();
  EXPECT_TRUE(lab_->wait_ready("node1", 40)) << lab_->log("node1");
  EXPECT_FALSE(events("stream-open").empty());
}

// istiod's client is a module zmeshd loads when istiod feeds it (userspace/xds/istiod.h), from
// ../lib/zmesh next to its executable. One that is missing, is not a library, is some other
// library, or is of another build stops zmeshd at start-up, before it changes anything on the
// node, with the file and the reason; a zmeshd fed by its config never maps gRPC.
TEST(IstiodModule, OneThatCannotBeUsedStopsZmeshdWithTheFileAndTheReason) {
  if (geteuid() != 0) GTEST_SKIP() << "zmeshd's kernel check needs root";
  const Dir dir;
  const std::filesystem::path bin = dir.path / "bin", module = dir.path / "lib/zmesh/zmesh-istiod.so";
  std::filesystem::create_directories(bin);
  std::filesystem::create_directories(module.parent_path());
  std::filesystem::copy_file(bin_path("zmeshd"), bin / "zmeshd");
  const std::string pin_root = "/sys/fs/bpf/zmesh-module-" + Lab::unique_name();
  const auto start = [&] {
    return run({(bin / "zmeshd").string(), "--outbound-ip", "10.0.0.1", "--xds-address", "127.0.0.1:1", "--xds-root-cert",
                dir / "missing-root.pem", "--bpf-root", pin_root, "--state-dir", dir / "state"});
  };
  const std::filesystem::path other_build =
      std::filesystem::path(bin_path("zmeshd")).parent_path().parent_path() / "tests/other-build-istiod.so";
  struct Case {
    std::string what, expected;
    std::function<void()> install;
  };
  const Case cases[] = {
      {"missing", "cannot open shared object file", [] {}},
      {"not a library", "invalid ELF header", [&] { std::ofstream(module) << std::string(4096, 'x'); }},
      {"some other library", "has no zmesh_istiod: it is not zmesh's module",
       [&] { std::filesystem::copy_file("/usr/lib/x86_64-linux-gnu/libz.so.1", module); }},
      {"another build", "is from another zmesh build",
       [&] { std::filesystem::copy_file(other_build, module, std::filesystem::copy_options::overwrite_existing); }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    std::filesystem::remove(module);
    c.install();
    const auto r = start();
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find(module.string()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.expected), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(pin_root)) << "zmeshd pinned something before it failed";
    EXPECT_FALSE(std::filesystem::exists(dir.path / "state")) << "zmeshd made its state before it failed";
  }
}

// The real module offers itself only to a zmeshd of its own interface version and layout.
TEST(IstiodModule, OffersItselfOnlyForItsInterfaceAndLayout) {
  const auto path = std::filesystem::path(bin_path("zmeshd")).parent_path().parent_path() / "lib/zmesh/zmesh-istiod.so";
  void* module = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(module, nullptr) << dlerror();
  auto entry = reinterpret_cast<xds::IstiodEntryPoint>(dlsym(module, xds::kIstiodEntryPoint));
  ASSERT_NE(entry, nullptr);
  EXPECT_NE(entry(xds::kIstiodInterfaceVersion, xds::istiod_layout()), nullptr);
  EXPECT_EQ(entry(xds::kIstiodInterfaceVersion + 1, xds::istiod_layout()), nullptr);
  EXPECT_EQ(entry(xds::kIstiodInterfaceVersion, xds::istiod_layout() ^ 1), nullptr);
}

// Waypoints (issue 17). app2-n2 is left out of the mesh, as Istio leaves its waypoints, and runs
// the stand-in waypoint of tests/tools/waypoint.mjs (Node.js http2) with a certificate of the
// mesh CA for .../sa/waypoint; istiod names it as the waypoint of a service (by hostname) and
// of a workload (by address). Each CONNECT it receives is in its log.
class XdsWaypointTest : public XdsTest {
 protected:
  void customize(LabOptions& options) override { options.not_in_config = {"app2-n2"}; }
  json& resource(const std::string& name) {
    for (auto& a : scenario_["resources"][kAddress])
      if (a["name"] == name) return a;
    throw std::runtime_error("no resource " + name);
  }
  // Changes a resource as istiod does: a new version.
  void change(const std::string& name, const std::function<void(json&)>& edit) {
    json& a = resource(name);
    a["version"] = std::to_string(std::stoi(a["version"].get<std::string>()) + 1);
    edit(a["address"]);
  }
  std::vector<json> connects() const { return server_log(dir_ / "waypoint.log"); }
};

TEST_F(XdsWaypointTest, ConnectionsGoThroughTheWaypointWithTheOriginalTargetAndNeverLoop) {
  const std::string waypoint_ip = lab_->pod("app2-n2").at("ip"), target = lab_->pod("app1-n2").at("ip");
  const std::string waypoint_id = "spiffe://cluster.local/ns/default/sa/waypoint";
  make_workload_cert(dir_, "waypoint", "ca", waypoint_id);
  change("Kubernetes//Pod/default/app2-n2", [](json& a) {
    a["workload"]["service_account"] = "waypoint";
    a["workload"]["canonical_name"] = "waypoint";
    a["workload"]["services"] = {{"default/waypoint.default.svc.cluster.local",
                                  {{"ports", {{{"service_port", 15008}, {"target_port", 15008}}}}}}};
  });
  scenario_["resources"][kAddress].push_back(
      {{"name", "default/waypoint.default.svc.cluster.local"},
       {"version", "1"},
       {"address",
        {{"service",
          {{"name", "waypoint"},
           {"namespace", "default"},
           {"hostname", "waypoint.default.svc.cluster.local"},
           {"addresses", {{{"network", ""}, {"address", "10.96.0.50"}}}},
           {"ports", {{{"service_port", 15008}, {"target_port", 15008}}}}}}}}});
  auto service_waypoint = [&](const std::string& hostname) {
    change("default/app1.default.svc.cluster.local", [&](json& a) {
      a["service"]["waypoint"] = {{"hostname", {{"namespace", "default"}, {"hostname", hostname}}},
                                  {"hbone_mtls_port", 15008}};
    });
    push();
  };
  service_waypoint("waypoint.default.svc.cluster.local");
  start_istiod();
  ASSERT_TRUE(lab_->wait_ready("node1", 30)) << lab_->log("node1");
  ASSERT_TRUE(lab_->wait_ready("node2", 30)) << lab_->log("node2");
  Process waypoint(lab_->exec("app2-n2", {"node", source_path("tests/tools/waypoint.mjs"), "--listen", "[::]:15008",
                                          "--cert", dir_ / "waypoint.pem", "--key", dir_ / "waypoint.key", "--ca",
                                          dir_ / "ca.pem", "--log", dir_ / "waypoint.log", "--route",
                                          "10.96.0.1:80=" + target + ":8080"}),
                   Process::Stderr::Merge);
  ASSERT_TRUE(waypoint.wait_for("waypoint listening"));
  auto server = echo_server(*lab_, "app1-n2", 8080, {"--connections", "100"});

  // Service-addressed: the service's waypoint gets CONNECT VIP:port from the client's
  // identity; the destination's node authorizes the waypoint's identity.
  EXPECT_EQ(echo_send(*lab_, "app2-n1", "10.96.0.1", 80).exit_code, 0) << lab_->log("node1");
  ASSERT_EQ(connects().size(), 1u);
  EXPECT_EQ(connects()[0].at("target"), "10.96.0.1:80");
  EXPECT_EQ(connects()[0].at("client"), "spiffe://cluster.local/ns/default/sa/app2");
  EXPECT_TRUE(lab_->log_shows("node2", "(" + waypoint_id + ") -> " + target + ":8080")) << lab_->log("node2");

  // Workload-addressed: the workload's waypoint (named by its pod's address) gets CONNECT
  // pod:port. A DENY of the waypoint's identity at the destination refuses what it carries.
  change("Kubernetes//Pod/default/app1-n2", [&](json& a) {
    a["workload"]["waypoint"] = {{"address", {{"network", ""}, {"address", waypoint_ip}}}, {"hbone_mtls_port", 15008}};
  });
  push();
  ASSERT_TRUE(eventually([&] {
    echo_send(*lab_, "app1-n1", target, 8080, 1000);
    return connects().size() >= 2;
  })) << lab_->log("node1");
  EXPECT_EQ(connects().back().at("target"), target + ":8080");
  EXPECT_EQ(connects().back().at("client"), "spiffe://cluster.local/ns/default/sa/app1");
  EXPECT_EQ(echo_send(*lab_, "app1-n1", target, 8080).exit_code, 0) << lab_->log("node1");
  scenario_["resources"][kAuthorization] = json::array(
      {{{"name", "default/deny-waypoint"},
        {"version", "1"},
        {"authorization",
         {{"name", "deny-waypoint"},
          {"namespace", "default"},
          {"scope", "NAMESPACE"},
          {"action", "DENY"},
          {"rules", {{{"clauses", {{{"matches", {{{"principals", {{{"exact", "cluster.local/ns/default/sa/waypoint"}}}}}}}}}}}}}}}}});
  push();
  ASSERT_TRUE(eventually([&] { return echo_send(*lab_, "app1-n1", target, 8080, 1000).exit_code != 0; }))
      << "the destination did not apply its policies to the waypoint's identity";
  EXPECT_TRUE(lab_->log_shows("node2", "HBONE 401")) << lab_->log("node2");
  scenario_["resources"][kAuthorization] = json::array();
  push();
  ASSERT_TRUE(eventually([&] { return echo_send(*lab_, "app1-n1", target, 8080, 1000).exit_code == 0; }));

  // The waypoint's own connections are not sent back to it: with app2-n1 (a captured pod) as
  // app1-n2's waypoint, app2-n1 reaches app1-n2 directly, while app1-n1 is sent to app2-n1's
  // 15008, where nothing listens.
  const std::string pod_waypoint = lab_->pod("app2-n1").at("ip");
  change("Kubernetes//Pod/default/app1-n2", [&](json& a) {
    a["workload"]["waypoint"] = {{"address", {{"network", ""}, {"address", pod_waypoint}}}, {"hbone_mtls_port", 15008}};
  });
  push();
  ASSERT_TRUE(eventually([&] { return echo_send(*lab_, "app1-n1", target, 8080, 1000).exit_code != 0; }));
  EXPECT_TRUE(lab_->log_shows("node1", "HBONE to waypoint " + pod_waypoint + " failed")) << lab_->log("node1");
  EXPECT_EQ(echo_send(*lab_, "app2-n1", target, 8080).exit_code, 0) << "the waypoint's own connection looped";

  // A waypoint named but with no address yet: a clear error for each connection.
  service_waypoint("nowhere.default.svc.cluster.local");
  ASSERT_TRUE(eventually([&] { return echo_send(*lab_, "app2-n1", "10.96.0.1", 80, 1000).exit_code != 0; }));
  EXPECT_TRUE(lab_->log_shows("node1", "service default/app1.default.svc.cluster.local is behind the waypoint "
                                       "default/nowhere.default.svc.cluster.local:15008, which has no address yet: "
                                       "istiod has sent no Service default/nowhere.default.svc.cluster.local"))
      << lab_->log("node1");
}

}  // namespace
}  // namespace zmesh::test
