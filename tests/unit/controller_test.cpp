// The Controller (the one writer of the mesh state) against a fake Datapath that records every
// call: the kernel is changed additions first, removals last, so a pod is never left
// uncaptured during a change; and a change that fails half way is rolled back to exactly what
// was there, the running generation staying in force.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "controller.h"

namespace zmesh {
namespace {

namespace fs = std::filesystem;
using boost::asio::ip::make_address;

// Records each call as text ("enroll default/a", "add_destination 10.0.0.2", ...) and keeps
// the state a kernel would hold; throws on the call named in `fail_on`.
class FakeDatapath : public Datapath {
 public:
  std::vector<std::string> calls;
  std::map<std::string, WorkloadAttachment> enrolled;  // by name
  std::map<IpAddress, DestinationKind> destinations;
  std::vector<DenyRule> deny;
  std::string fail_on;

  void enroll(const WorkloadAttachment& w) override {
    record("enroll " + w.name);
    enrolled[w.name] = w;
  }
  void unenroll(const WorkloadAttachment& w) override {
    record("unenroll " + w.name);
    auto it = enrolled.find(w.name);
    if (it == enrolled.end()) return;
    // Only what the leftover names goes: an IP another workload took stays.
    for (const auto& ip : w.ips) std::erase(it->second.ips, ip);
    if (it->second.ips.empty()) enrolled.erase(it);
  }
  void add_destination(const IpAddress& ip, DestinationKind kind) override {
    record("add_destination " + ip.to_string());
    destinations[ip] = kind;
  }
  void remove_destination(const IpAddress& ip) override {
    record("remove_destination " + ip.to_string());
    destinations.erase(ip);
  }
  void set_destination_cidrs(const std::vector<IpBlock>&) override { record("set_destination_cidrs"); }
  void set_deny_rules(const std::vector<DenyRule>& rules) override {
    record("set_deny_rules");
    deny = rules;
  }
  DatapathCounters counters() const override { return {}; }
  std::optional<OriginalDestination> original_destination(const TcpEndpoint&, const TcpEndpoint&) override {
    return std::nullopt;
  }

  // Where in `calls` the first call starting with `prefix` is (calls.size() when none).
  size_t first(const std::string& prefix) const {
    return static_cast<size_t>(std::find_if(calls.begin(), calls.end(), [&](const auto& c) { return c.rfind(prefix, 0) == 0; }) -
                               calls.begin());
  }
  size_t last(const std::string& prefix) const {
    for (size_t i = calls.size(); i-- > 0;)
      if (calls[i].rfind(prefix, 0) == 0) return i;
    return calls.size();
  }

 private:
  void record(const std::string& call) {
    calls.push_back(call);
    if (call == fail_on) throw std::runtime_error("the kernel refused: " + call);
  }
};

class ControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("zmesh-controller-test-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    for (const char* pod : {"a", "b", "c"}) fs::create_directories(dir_ / pod);  // the pods' "cgroups"
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A config with these workloads (name, IP) on node n1, each with its own cgroup.
  void write(const std::vector<std::pair<std::string, std::string>>& workloads) {
    nlohmann::json config = {{"workloads", nlohmann::json::array()}};
    for (const auto& [name, ip] : workloads)
      config["workloads"].push_back({{"name", name}, {"namespace", "default"}, {"node", "n1"},
                                     {"workloadIps", {ip}}, {"cgroup", (dir_ / name).string()}});
    std::ofstream(dir_ / "mesh.json") << config.dump();
  }
  ControllerOptions options() const { return {"n1", "cluster.local", dir_ / "mesh.json", "", false, {}}; }

  fs::path dir_;
  FakeDatapath datapath_;
  MeshState state_;
};

TEST_F(ControllerTest, AdditionsComeBeforeRemovals) {
  write({{"a", "10.0.0.2"}});
  Controller controller(options(), datapath_, state_, nullptr);
  controller.start(Controller::load(options()));
  datapath_.calls.clear();
  // a leaves, b arrives: b is captured before a is let go.
  write({{"b", "10.0.0.3"}});
  ASSERT_TRUE(controller.reload_file(false));
  const auto& d = datapath_;
  EXPECT_LT(d.first("add_destination 10.0.0.3"), d.first("unenroll default/a"));
  EXPECT_LT(d.first("enroll default/b"), d.first("unenroll default/a"));
  EXPECT_LT(d.last("enroll"), d.first("unenroll"));
  EXPECT_LT(d.last("add_destination"), d.first("remove_destination"));
  EXPECT_LT(d.first("unenroll default/a"), d.calls.size()) << "and a did go";
  EXPECT_EQ(d.enrolled.size(), 1u);
  EXPECT_TRUE(d.enrolled.contains("default/b"));
  EXPECT_FALSE(d.destinations.contains(make_address("10.0.0.2")));
  EXPECT_EQ(state_.current()->generation, 2u);
}

TEST_F(ControllerTest, AnAddressMovingToAnotherPodIsNeverReleased) {
  write({{"a", "10.0.0.2"}});
  Controller controller(options(), datapath_, state_, nullptr);
  controller.start(Controller::load(options()));
  // The pod is replaced under another name with the same address: the old one's unenroll must
  // not take the address (nor the capture of it) away from the new one.
  write({{"c", "10.0.0.2"}});
  ASSERT_TRUE(controller.reload_file(false));
  ASSERT_TRUE(datapath_.enrolled.contains("default/c"));
  EXPECT_EQ(datapath_.enrolled.at("default/c").ips, std::vector<IpAddress>{make_address("10.0.0.2")});
  EXPECT_TRUE(datapath_.destinations.contains(make_address("10.0.0.2")));
  EXPECT_EQ(std::count(datapath_.calls.begin(), datapath_.calls.end(), "remove_destination 10.0.0.2"), 0);
}

TEST_F(ControllerTest, AFailedStepIsRolledBackAndTheRunningGenerationStays) {
  write({{"a", "10.0.0.2"}, {"b", "10.0.0.3"}});
  Controller controller(options(), datapath_, state_, nullptr);
  controller.start(Controller::load(options()));
  const auto enrolled = datapath_.enrolled;
  const auto destinations = datapath_.destinations;
  // b leaves and c arrives, but the kernel refuses c: nothing of the change may stay.
  datapath_.fail_on = "enroll default/c";
  write({{"a", "10.0.0.2"}, {"c", "10.0.0.4"}});
  EXPECT_THROW(controller.reload_file(false), std::exception);
  datapath_.fail_on.clear();
  EXPECT_EQ(state_.current()->generation, 1u) << "the running generation stays";
  EXPECT_EQ(datapath_.destinations, destinations) << "10.0.0.4 was added, then taken back";
  ASSERT_EQ(datapath_.enrolled.size(), enrolled.size());
  for (const auto& [name, w] : enrolled) EXPECT_TRUE(datapath_.enrolled.contains(name)) << name << " stays enrolled";
  EXPECT_FALSE(controller.status().at("lastFailure").is_null());
  // A fixed file is applied.
  write({{"a", "10.0.0.2"}, {"b", "10.0.0.3"}, {"c", "10.0.0.4"}});
  EXPECT_TRUE(controller.reload_file(false));
  EXPECT_EQ(state_.current()->generation, 2u);
  EXPECT_TRUE(datapath_.enrolled.contains("default/c"));
}

}  // namespace
}  // namespace zmesh

namespace zmesh {
namespace {

WorkloadConfig xds_workload(const std::string& name, const std::string& ip, const std::string& node) {
  WorkloadConfig w;
  w.uid = "Kubernetes//Pod/default/" + name;
  w.name = name;
  w.namespace_ = "default";
  w.service_account = name + "-sa";
  w.node = node;
  w.ips = {make_address(ip)};
  w.mtls_strict = false;
  return w;
}

// istiod's layer: removals by resource name, a CNI pod paired with its Workload only when the
// addresses agree, and the kernel given what a node needs — pods inside the pod CIDRs are
// captured by CIDR, so a cluster of any size fits zm_dests.
TEST_F(ControllerTest, XdsWorkloadsPairWithCniPodsAndPodCidrsKeepTheKernelSmall) {
  ControllerOptions o = options();
  o.config_path.clear();
  o.pod_cidrs = {parse_ip_block("10.244.0.0/16", "pod CIDR")};
  Controller controller(o, datapath_, state_, nullptr);
  controller.start({});
  const std::string address_type = xds::kAddressType;

  // Another node's pods: in the CIDR, no kernel entry; outside it, one.
  ASSERT_EQ(controller.apply_xds({address_type,
                                  {xds_workload("far", "10.244.9.9", "n9"), xds_workload("vm", "192.168.0.7", "n9")},
                                  {}}),
            "");
  EXPECT_FALSE(datapath_.destinations.contains(make_address("10.244.9.9")));
  EXPECT_TRUE(datapath_.destinations.contains(make_address("192.168.0.7")));

  // A CNI pod of this node with no identity yet: enrolled (captured), no identity.
  WorkloadConfig pod;
  pod.name = "a";
  pod.namespace_ = "default";
  pod.node = "n1";
  pod.ips = {make_address("10.244.1.5")};
  pod.cgroup = (dir_ / "a").string();
  pod.origin = WorkloadConfig::Origin::AwaitingXds;
  controller.enroll(pod);
  EXPECT_TRUE(datapath_.enrolled.contains("default/a"));
  auto listed = [&] {
    for (const auto& w : controller.workloads())
      if (w.at("name") == "a") return w;
    return nlohmann::json();
  };
  EXPECT_TRUE(listed().at("identity").is_null());
  EXPECT_TRUE(state_.current()->mesh.local_workloads().empty()) << "no identity, no local workload to the proxy";

  // Its Workload with other addresses (a pod of that name before): not paired.
  ASSERT_EQ(controller.apply_xds({address_type, {xds_workload("a", "10.244.1.99", "n1")}, {}}), "");
  EXPECT_TRUE(listed().at("identity").is_null());
  // With its own: paired, istiod's identity, the node's cgroup.
  ASSERT_EQ(controller.apply_xds({address_type, {xds_workload("a", "10.244.1.5", "n1")}, {}}), "");
  EXPECT_EQ(listed().at("identity"), "spiffe://cluster.local/ns/default/sa/a-sa");
  EXPECT_EQ(listed().at("source"), "xds+cni");
  EXPECT_EQ(listed().at("cgroup"), (dir_ / "a").string());
  ASSERT_EQ(state_.current()->mesh.local_workloads().size(), 1u);

  // Removed by its resource name (a name never sent removes nothing); the pod stays captured.
  ASSERT_EQ(controller.apply_xds({address_type, {}, {"Kubernetes//Pod/default/a", "never-sent"}}), "");
  EXPECT_TRUE(listed().at("identity").is_null());
  EXPECT_TRUE(datapath_.enrolled.contains("default/a"));
  ASSERT_EQ(controller.apply_xds({address_type, {}, {"Kubernetes//Pod/default/vm"}}), "");
  EXPECT_FALSE(datapath_.destinations.contains(make_address("192.168.0.7")));
}

TEST_F(ControllerTest, MoreAddressesThanTheKernelHoldsAreRefusedWithWhatToDo) {
  ControllerOptions o = options();
  o.config_path.clear();
  Controller controller(o, datapath_, state_, nullptr);
  controller.start({});
  std::vector<xds::Resource> many;
  for (uint32_t i = 0; i <= ZM_MAX_DESTS; ++i)
    many.push_back(xds_workload("p" + std::to_string(i),
                                boost::asio::ip::address_v4((10u << 24) + i).to_string(), "n9"));
  const std::string refused = controller.apply_xds({xds::kAddressType, many, {}});
  EXPECT_NE(refused.find("more than zm_dests holds"), std::string::npos) << refused;
  EXPECT_NE(refused.find("--pod-cidr"), std::string::npos) << refused;
  EXPECT_TRUE(datapath_.destinations.empty()) << "nothing of a refused change";
  EXPECT_EQ(state_.current()->generation, 1u);
}

}  // namespace
}  // namespace zmesh
