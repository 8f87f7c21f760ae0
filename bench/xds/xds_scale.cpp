// How zmeshd takes a large cluster from istiod (issue 16, item 9): a full snapshot of 50,000
// workloads, 5,000 services and 1,000 policies, then single-workload changes, each from its
// wire form (the serialized Address or Authorization in its Any, as the xDS stream hands it
// over) through decoding, the controller (merge, check, the snapshot, policies) and into the
// real kernel maps of a real datapath. gRPC transport is left out: on a node it is one local
// read per response.
//
//   zmesh_xds_scale [--workloads N] [--services N] [--policies N] [--changes N]
//
// Needs root and cgroup v2; runs in a private network namespace with a scratch pin root and
// cgroup, removed afterwards. Prints one JSON object of figures.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <google/protobuf/any.pb.h>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "authorization.pb.h"
#include "controller.h"
#include "translate.h"
#include "workload.pb.h"
#include "zmesh/datapath.h"
#include "zmesh/kernel.h"
#include "zmesh/state.h"
#include <spdlog/spdlog.h>

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

uint64_t rss_kib() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  return 0;
}

std::string v4(uint32_t a) { return std::string{char(a >> 24), char(a >> 16), char(a >> 8), char(a)}; }
std::string v6(uint16_t prefix, uint32_t a) {
  std::string b(16, '\0');
  b[0] = char(0xfd), b[1] = 0, b[2] = char(prefix >> 8), b[3] = char(prefix);
  for (int i = 0; i < 4; ++i) b[12 + i] = char(a >> (24 - 8 * i));
  return b;
}

google::protobuf::Any any_of(const google::protobuf::Message& m, const char* type) {
  google::protobuf::Any any;
  any.set_type_url(type);
  any.set_value(m.SerializeAsString());
  return any;
}

struct Wire {
  std::string name;
  google::protobuf::Any any;
};

// Pods spread over 1,000 other nodes, 500 namespaces, 2,000 service accounts; every pod an
// endpoint of one service; its addresses in the pod CIDRs (10.128.0.0/9, fd00:244::/32) unless
// `outside` (an address the kernel needs an entry for).
Wire workload(uint32_t i, uint32_t services, bool outside = false) {
  istio::workload::Address a;
  auto* w = a.mutable_workload();
  const std::string ns = "ns-" + std::to_string(i % 500);
  w->set_uid("Kubernetes//Pod/" + ns + "/pod-" + std::to_string(i));
  w->set_name("pod-" + std::to_string(i));
  w->set_namespace_(ns);
  w->add_addresses(v4(outside ? (172u << 24 | 16u << 16 | i) : (10u << 24 | 128u << 16) + i));
  w->add_addresses(v6(0x244, i));
  w->set_node("node-" + std::to_string(2 + i % 1000));
  w->set_service_account("sa-" + std::to_string(i % 2000));
  w->set_trust_domain("cluster.local");
  w->set_tunnel_protocol(istio::workload::HBONE);
  w->set_canonical_name("app-" + std::to_string(i % services));
  w->set_workload_name("app-" + std::to_string(i % services));
  const uint32_t s = i % services;
  auto* port = (*w->mutable_services())["ns-" + std::to_string(s % 500) + "/svc-" + std::to_string(s) + ".svc"].add_ports();
  port->set_service_port(80);
  port->set_target_port(8080);
  if (i % 50 == 0) w->add_authorization_policies(ns + "/selected-" + std::to_string(i % 300));
  return {w->uid(), any_of(a, zmesh::xds::kAddressType)};
}

Wire service(uint32_t s) {
  istio::workload::Address a;
  auto* svc = a.mutable_service();
  svc->set_name("svc-" + std::to_string(s));
  svc->set_namespace_("ns-" + std::to_string(s % 500));
  svc->set_hostname("svc-" + std::to_string(s) + ".svc");
  svc->add_addresses()->set_address(v4(10u << 24 | 96u << 16 | s));
  svc->add_addresses()->set_address(v6(0x96, s));
  auto* p = svc->add_ports();
  p->set_service_port(80);
  p->set_target_port(8080);
  return {svc->namespace_() + "/" + svc->hostname(), any_of(a, zmesh::xds::kAddressType)};
}

// A mix as a cluster has them: namespace ALLOWs by namespace and principal, selected ALLOWs by
// service account and port, DENYs by source range and port.
Wire policy(uint32_t p) {
  istio::security::Authorization a;
  const std::string ns = "ns-" + std::to_string(p % 500);
  auto* m = a.add_rules()->add_clauses()->add_matches();
  if (p % 10 < 5) {
    a.set_name("allow-" + std::to_string(p));
    a.set_scope(istio::security::NAMESPACE);
    m->add_namespaces()->set_exact("ns-" + std::to_string((p + 1) % 500));
    m->add_principals()->set_prefix("cluster.local/ns/" + ns + "/");
  } else if (p % 10 < 8) {
    a.set_name("selected-" + std::to_string(p % 300));
    a.set_scope(istio::security::WORKLOAD_SELECTOR);
    auto* sa = m->add_service_accounts();
    sa->set_namespace_(ns);
    sa->set_serviceaccount("sa-" + std::to_string(p));
    m->add_destination_ports(8080);
  } else {
    a.set_name("deny-" + std::to_string(p));
    a.set_scope(istio::security::NAMESPACE);
    a.set_action(istio::security::DENY);
    auto* ip = m->add_source_ips();
    ip->set_address(v4(192u << 24 | 168u << 16 | p));
    ip->set_length(32);
    m->add_destination_ports(9000 + p % 100);
  }
  a.set_namespace_(ns);
  return {ns + "/" + a.name(), any_of(a, zmesh::xds::kAuthorizationType)};
}

// The client's work for one response: decode every resource (what a NACK would name is none
// here), then hand the change to the controller.
double decode_ms = 0;  // of all apply() calls: the part spent decoding

double apply(zmesh::Controller& controller, const char* type, const std::vector<Wire>& resources) {
  const auto began = Clock::now();
  zmesh::xds::Delta delta{type, {}, {}};
  delta.updated.reserve(resources.size());
  for (const auto& r : resources) delta.updated.push_back(zmesh::xds::decode(type, r.name, r.any));
  decode_ms += std::chrono::duration<double, std::milli>(Clock::now() - began).count();
  const std::string refused = controller.apply_xds(std::move(delta));
  if (!refused.empty()) throw std::runtime_error(std::string("refused: ") + refused);
  return std::chrono::duration<double, std::milli>(Clock::now() - began).count();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

int run(uint32_t workloads, uint32_t services, uint32_t policies, uint32_t changes) {
  // The figures on stdout; the controller's log only with ZMESH_DEBUG=1 (where each change's
  // time goes: merge, snapshot, kernel plan, reconcile, publish).
  spdlog::set_level(std::getenv("ZMESH_DEBUG") ? spdlog::level::debug : spdlog::level::warn);
  const auto cgroup2 = zmesh::find_mount("cgroup2");
  if (geteuid() != 0 || !cgroup2 || unshare(CLONE_NEWNET) != 0) {
    std::cerr << "zmesh_xds_scale: needs root and cgroup v2\n";
    return 2;
  }
  // Named as the tests name their scratch objects: if this process dies before it removes
  // them, `scripts/lab gc` does.
  const std::string suffix = "zmesh-test-t" + std::to_string(getpid()) + "-xds-scale";
  zmesh::DatapathOptions options;
  options.pin_root = "/sys/fs/bpf/" + suffix;
  options.outbound_ip4 = boost::asio::ip::make_address_v4("10.244.1.1");
  options.outbound_ip6 = boost::asio::ip::make_address_v6("fd00:244:1::1");
  options.proxy_cgroup = *cgroup2 / suffix;
  options.node_capture = false;  // nothing of this machine's own connects
  std::filesystem::create_directories(options.proxy_cgroup);
  zmesh::bring_up_loopback();
  json out;
  int status = 0;
  try {
    auto datapath = zmesh::BpfDatapath::start(options);
    zmesh::MeshState state;
    zmesh::ControllerOptions co{"node-1", "cluster.local", {}, {}, true,
                                {zmesh::parse_ip_block("10.128.0.0/9", "pod CIDR"),
                                 zmesh::parse_ip_block("fd00:244::/32", "pod CIDR")}};
    zmesh::Controller controller(co, *datapath, state, nullptr);
    controller.start({});
    datapath->commit_start();

    std::vector<Wire> addresses, authorizations;
    for (uint32_t s = 0; s < services; ++s) addresses.push_back(service(s));
    for (uint32_t i = 0; i < workloads; ++i) addresses.push_back(workload(i, services));
    for (uint32_t p = 0; p < policies; ++p) authorizations.push_back(policy(p));
    size_t wire_bytes = 0;
    for (const auto* list : {&addresses, &authorizations})
      for (const auto& r : *list) wire_bytes += r.any.value().size();

    const uint64_t rss_before = rss_kib();
    const double address_ms = apply(controller, zmesh::xds::kAddressType, addresses);
    const double authorization_ms = apply(controller, zmesh::xds::kAuthorizationType, authorizations);
    const double full_decode_ms = decode_ms;
    const uint64_t rss_after = rss_kib();
    addresses.clear();
    authorizations.clear();
    const auto status_after = controller.status();

    // Single changes: one workload moves to an address outside the pod CIDRs and back, so that
    // each change also adds and removes a kernel entry.
    std::vector<double> change_ms;
    for (uint32_t c = 0; c < changes; ++c) {
      const uint32_t i = (c * 7919) % workloads;
      change_ms.push_back(apply(controller, zmesh::xds::kAddressType, {workload(i, services, c % 2 == 0)}));
    }
    out = {{"workloads", workloads},
           {"services", services},
           {"policies", policies},
           {"wireMiB", static_cast<double>(wire_bytes) / (1 << 20)},
           {"fullSnapshotMs", address_ms + authorization_ms},
           {"fullSnapshotDecodeMs", full_decode_ms},
           {"addressResponseMs", address_ms},
           {"authorizationResponseMs", authorization_ms},
           {"rssGrowthMiB", static_cast<double>(rss_after - rss_before) / 1024},
           {"kernelDestinations", status_after.at("kernelDestinations")},
           {"kernelDenyEntries", status_after.at("kernelDenyEntries")},
           {"changes", changes},
           {"changeP50Ms", percentile(change_ms, 0.5)},
           {"changeP99Ms", percentile(change_ms, 0.99)},
           {"changeMaxMs", percentile(change_ms, 1.0)}};
  } catch (const std::exception& e) {
    std::cerr << "zmesh_xds_scale: " << e.what() << '\n';
    status = 1;
  }
  zmesh::BpfDatapath::cleanup(options);
  std::filesystem::remove(options.proxy_cgroup);
  if (status == 0) std::cout << out.dump(2) << '\n';
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t workloads = 50000, services = 5000, policies = 1000, changes = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const uint32_t value = static_cast<uint32_t>(std::stoul(argv[i + 1]));
    if (flag == "--workloads") workloads = value;
    else if (flag == "--services") services = std::max(1u, value);
    else if (flag == "--policies") policies = value;
    else if (flag == "--changes") changes = std::max(1u, value);
    else {
      std::cerr << "zmesh_xds_scale: unknown option " << flag << '\n';
      return 2;
    }
  }
  return run(workloads, services, policies, changes);
}
