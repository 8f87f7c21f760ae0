// The Controller (the one writer of the mesh state) against a fake Datapath that records every
// call: the kernel is changed additions first, removals last, so a pod is never left
// uncaptured during a change; and a change that fails half way is rolled back to exactly what
// was there, the running generation staying in force.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>

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

// A pod renamed in the file keeps its cgroup and veth: the new name takes them over from the
// old one in the same change (the check for two pods sharing a cgroup sees the old one gone).
TEST_F(ControllerTest, ARenamedPodTakesOverItsCgroupInOneChange) {
  auto file = [&](const std::string& name) {
    nlohmann::json config = {{"workloads", {{{"name", name}, {"namespace", "default"}, {"node", "n1"},
                                             {"workloadIps", {"10.0.0.2"}}, {"cgroup", (dir_ / "a").string()},
                                             {"hostVeth", "veth-a"}}}}};
    std::ofstream(dir_ / "mesh.json") << config.dump();
  };
  file("web-v2");
  Controller controller(options(), datapath_, state_, nullptr);
  controller.start(Controller::load(options()));
  file("web");  // sorts before web-v2
  ASSERT_TRUE(controller.reload_file(false));
  EXPECT_TRUE(datapath_.enrolled.contains("default/web"));
  EXPECT_LT(datapath_.first("enroll default/web"), datapath_.first("unenroll default/web-v2"));
  EXPECT_LT(datapath_.first("unenroll default/web-v2"), datapath_.calls.size()) << "and the old name went";
  EXPECT_EQ(state_.current()->generation, 2u);
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

// Each change is applied entry by entry (only the keys it touches are looked at again), so a
// long random run of changes from every source — istiod's deltas (workloads of one name under
// several uids, removals of unknown names), CNI pods waiting for their Workload, file reloads,
// policies of each layer — must leave exactly what a controller that starts from the final
// layers at once would hold: the listings and the kernel.
TEST_F(ControllerTest, ChangesOneByOneLeaveWhatTheWholeStateWould) {
  std::mt19937 rng(16);
  auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
  ControllerOptions o = options();
  o.runtime_path = dir_ / "runtime.json";
  o.pod_cidrs = {parse_ip_block("10.244.0.0/16", "pod CIDR")};
  // Addresses: the file's and the runtime's pools are apart from istiod's, so that no partial
  // order of the layers collides; istiod's collide among themselves (refused changes).
  auto ip = [&](int pool, int i) {
    return pool == 2 && i % 2 ? "192.168.2." + std::to_string(i) : "10.244." + std::to_string(pool) + "." + std::to_string(i);
  };
  auto file_text = [&] {
    nlohmann::json config = {{"workloads", nlohmann::json::array()}, {"services", nlohmann::json::array()},
                             {"policies", nlohmann::json::array()}};
    for (const char* name : {"a", "f1", "f2"})
      if (pick(3))
        config["workloads"].push_back({{"name", name}, {"namespace", "default"}, {"node", name[0] == 'a' ? "n1" : "n2"},
                                       {"workloadIps", {ip(0, name[0] == 'a' ? 1 : name[1] == '1' ? 2 : 3)}},
                                       {"cgroup", (dir_ / "a").string()}, {"mtlsMode", pick(2) ? "STRICT" : "PERMISSIVE"}});
    if (pick(2))
      config["services"].push_back({{"name", "s" + std::to_string(pick(3))}, {"namespace", "default"},
                                    {"vips", {"10.96.0." + std::to_string(1 + pick(2))}}, {"ports", {{"80", 8080}}}});
    if (pick(2))
      config["policies"].push_back({{"name", "p" + std::to_string(pick(3))}, {"namespace", "default"}, {"action", "DENY"},
                                    {"rules", {{{"from", {{{"source", {{"ipBlocks", {"192.168.9.0/24"}}}}}}}}}}});
    std::ofstream(dir_ / "mesh.json") << config.dump();
  };
  file_text();
  Controller live(o, datapath_, state_, nullptr);
  live.start(Controller::load(o));

  std::map<std::string, xds::Resource> addresses, authorizations;  // istiod's, by resource name
  auto xds_pod = [&](int n) {
    WorkloadConfig w = xds_workload("x" + std::to_string(n % 5), ip(2, 1 + pick(12)), pick(2) ? "n1" : "n9");
    w.uid += "-" + std::to_string(n / 5);  // a name under two uids, as across a restart of its pod
    w.mtls_strict = pick(2);
    if (pick(2)) w.services["default/s" + std::to_string(pick(3)) + ".default"] = {};
    if (pick(3) == 0) w.authorization_policies = {"default/xp" + std::to_string(pick(3))};
    return w;
  };
  int refused = 0;
  for (int step = 0; step < 400; ++step) {
    const int what = pick(6);
    bool ok = true;
    if (what <= 1) {  // an Address delta
      xds::Delta delta{xds::kAddressType, {}, {}};
      auto next = addresses;
      for (int i = 0, n = 1 + pick(3); i < n; ++i) {
        if (pick(3) == 0) {
          ServiceConfig s;
          s.name = "s" + std::to_string(pick(3));
          s.namespace_ = "default";
          s.hostname = s.name + ".default";
          s.vips = {make_address("10.96.1." + std::to_string(1 + pick(4)))};
          s.ports = {{80, 8080}};
          next.insert_or_assign(xds::resource_key(s), s);
          delta.updated.push_back(s);
        } else if (pick(3) == 0) {
          const std::string name = pick(2) ? "Kubernetes//Pod/default/x" + std::to_string(pick(5)) + "-" + std::to_string(pick(2))
                                           : "default/s" + std::to_string(pick(3)) + ".default";
          next.erase(name);
          delta.removed.push_back(name);
        } else {
          WorkloadConfig w = xds_pod(pick(10));
          next.insert_or_assign(w.uid, w);
          delta.updated.push_back(w);
        }
      }
      ok = live.apply_xds(delta).empty();
      if (ok) addresses = std::move(next);
    } else if (what == 2) {  // an Authorization delta
      xds::Delta delta{xds::kAuthorizationType, {}, {}};
      const std::string name = "xp" + std::to_string(pick(3));
      if (pick(3) == 0) {
        delta.removed.push_back("default/" + name);
      } else {
        AuthorizationPolicy p;
        p.name = name;
        p.namespace_ = "default";
        p.action = AuthorizationPolicy::Action::Deny;
        p.scope = pick(2) ? AuthorizationPolicy::Scope::Namespace : AuthorizationPolicy::Scope::WorkloadSelector;
        PolicyMatch m;
        m.source_ips = {parse_ip_block("192.168.7." + std::to_string(pick(4)), "ip")};
        p.rules = {PolicyRule{{PolicyClause{{m}}}}};
        delta.updated.push_back(p);
      }
      ok = live.apply_xds(delta).empty();
      if (ok) {
        if (delta.removed.empty()) authorizations.insert_or_assign("default/" + name, delta.updated.front());
        else authorizations.erase("default/" + name);
      }
    } else if (what == 3) {  // a CNI pod of this node, waiting for its Workload, or its DEL
      const std::string name = "x" + std::to_string(pick(5));
      try {
        if (pick(3)) {
          WorkloadConfig pod;
          pod.name = name;
          pod.namespace_ = "default";
          pod.uid = "default/" + name;  // what the control socket's parser gives it
          pod.node = "n1";
          pod.ips = {make_address(ip(2, 1 + pick(12)))};
          pod.cgroup = (dir_ / (pick(2) ? "b" : "c")).string();
          pod.origin = WorkloadConfig::Origin::AwaitingXds;
          live.enroll(pod);
        } else {
          live.unenroll("default/" + name);
        }
      } catch (const ConfigError&) {
        ok = false;
      }
    } else if (what == 4) {  // a runtime policy
      AuthorizationPolicy p;
      p.name = "rp";
      p.namespace_ = "default";
      p.action = AuthorizationPolicy::Action::Deny;
      p.scope = AuthorizationPolicy::Scope::Namespace;
      PolicyMatch m;
      m.ports = {static_cast<uint16_t>(80 + pick(3))};
      p.rules = {PolicyRule{{PolicyClause{{m}}}}};
      try {
        if (pick(2)) live.apply_policy(p);
        else live.delete_policy("default/rp");
      } catch (const ConfigError&) {
        ok = false;
      }
    } else {  // the file
      file_text();
      try {
        live.reload_file(true);
      } catch (const ConfigError&) {
        ok = false;
      }
    }
    refused += !ok;

    // The whole state at once: the file and runtime.json as start-up reads them, then istiod's.
    FakeDatapath kernel;
    MeshState state;
    Controller whole(o, kernel, state, nullptr);
    whole.start(Controller::load(o));
    xds::Delta all_addresses{xds::kAddressType, {}, {}}, all_policies{xds::kAuthorizationType, {}, {}};
    for (const auto& [name, r] : addresses) all_addresses.updated.push_back(r);
    for (const auto& [name, r] : authorizations) all_policies.updated.push_back(r);
    ASSERT_EQ(whole.apply_xds(all_addresses), "") << "step " << step;
    ASSERT_EQ(whole.apply_xds(all_policies), "") << "step " << step;

    const std::string at = "step " + std::to_string(step);
    ASSERT_EQ(live.workloads(), whole.workloads()) << at;
    ASSERT_EQ(live.services(), whole.services()) << at;
    auto policies = [](nlohmann::json list) {  // ids are given in order of arrival
      for (auto& p : list) p.erase("ruleId");
      return list;
    };
    ASSERT_EQ(policies(live.policies()), policies(whole.policies())) << at;
    auto counts = [](nlohmann::json status) {
      return nlohmann::json{status.at("workloads"), status.at("services"), status.at("policies"),
                            status.at("enrolledHere"), status.at("kernelDestinations"), status.at("kernelDenyEntries")};
    };
    ASSERT_EQ(counts(live.status()), counts(whole.status())) << at;
    ASSERT_EQ(datapath_.destinations, kernel.destinations) << at;
    ASSERT_EQ(datapath_.enrolled.size(), kernel.enrolled.size()) << at;
    for (const auto& [name, w] : kernel.enrolled) {
      ASSERT_TRUE(datapath_.enrolled.contains(name)) << at << " " << name;
      ASSERT_EQ(datapath_.enrolled.at(name).ips, w.ips) << at << " " << name;
      ASSERT_EQ(datapath_.enrolled.at(name).cgroup, w.cgroup) << at << " " << name;
    }
    auto rules = [](std::vector<DenyRule> deny) {
      std::set<std::string> out;
      for (const auto& r : deny) out.insert(r.source.to_string() + ">" + r.destination.to_string() + ":" + std::to_string(r.port));
      return out;
    };
    ASSERT_EQ(rules(datapath_.deny), rules(kernel.deny)) << at;
  }
  EXPECT_GT(refused, 10) << "refusals were exercised";
  EXPECT_LT(refused, 300) << "and so were changes";
}

}  // namespace
}  // namespace zmesh
