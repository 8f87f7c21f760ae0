// istiod's resources into the config model (userspace/xds/translate.cpp): what each field
// becomes, and every resource that cannot be read refused with its reason, never a crash.
#include <gtest/gtest.h>

#include <google/protobuf/any.pb.h>

#include "authorization.pb.h"
#include "translate.h"
#include "workload.pb.h"
#include "zmesh/mesh.h"
#include "zmesh/policy.h"

namespace zmesh::xds {
namespace {

std::string bytes(std::initializer_list<uint8_t> b) { return std::string(b.begin(), b.end()); }

google::protobuf::Any any_of(const google::protobuf::Message& m, const std::string& type) {
  google::protobuf::Any any;
  any.set_type_url(type);
  any.set_value(m.SerializeAsString());
  return any;
}

istio::workload::Address a_workload() {
  istio::workload::Address a;
  auto* w = a.mutable_workload();
  w->set_uid("c1//Pod/shop/web-1");
  w->set_name("web-1");
  w->set_namespace_("shop");
  w->add_addresses(bytes({10, 244, 1, 5}));
  w->add_addresses(bytes({0xfd, 0, 2, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5}));
  w->set_node("n1");
  w->set_service_account("web");
  w->set_trust_domain("td.example");
  w->set_tunnel_protocol(istio::workload::HBONE);
  w->set_canonical_name("web");
  w->set_canonical_revision("v3");
  w->add_authorization_policies("shop/istio_converted_static_strict");
  auto& ports = (*w->mutable_services())["shop/web.shop.svc.cluster.local"];
  auto* p = ports.add_ports();
  p->set_service_port(80);
  p->set_target_port(9090);
  auto* unresolved = ports.add_ports();  // a named port istiod could not resolve: the service's applies
  unresolved->set_service_port(443);
  w->mutable_waypoint()->mutable_address()->set_address(bytes({10, 96, 0, 9}));
  return a;
}

std::string refusal(const std::string& type, const std::string& name, const google::protobuf::Any& any) {
  try {
    decode(type, name, any);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(XdsTranslate, AWorkloadBecomesTheConfigsWorkload) {
  const auto r = decode(kAddressType, "c1//Pod/shop/web-1", any_of(a_workload(), kAddressType));
  const auto& w = std::get<WorkloadConfig>(r);
  EXPECT_EQ(resource_key(r), "c1//Pod/shop/web-1");
  EXPECT_EQ(key_of(w), "shop/web-1");
  ASSERT_EQ(w.ips.size(), 2u);
  EXPECT_EQ(w.ips[0].to_string(), "10.244.1.5");
  EXPECT_EQ(w.ips[1].to_string(), "fd00:244:1::5");
  EXPECT_EQ(w.protocol, TunnelProtocol::Hbone);
  EXPECT_FALSE(w.mtls_strict) << "STRICT comes as istiod's converted policy, enforced by the proxy";
  EXPECT_EQ(w.trust_domain, "td.example");
  EXPECT_EQ(w.canonical_revision, "v3");
  EXPECT_EQ(w.waypoint, "10.96.0.9:15008");
  EXPECT_EQ(w.authorization_policies, std::vector<std::string>{"shop/istio_converted_static_strict"});
  EXPECT_EQ(w.services.at("shop/web.shop.svc.cluster.local"), (PortMap{{80, 9090}}));
}

TEST(XdsTranslate, AServiceBecomesTheConfigsService) {
  istio::workload::Address a;
  auto* s = a.mutable_service();
  s->set_name("web");
  s->set_namespace_("shop");
  s->set_hostname("web.shop.svc.cluster.local");
  s->add_addresses()->set_address(bytes({10, 96, 0, 20}));
  auto* p = s->add_ports();
  p->set_service_port(80);  // target 0: the service port
  s->mutable_load_balancing()->set_mode(istio::workload::LoadBalancing::STRICT);
  s->mutable_load_balancing()->add_routing_preference(istio::workload::LoadBalancing::NODE);
  const auto r = decode(kAddressType, "shop/web.shop.svc.cluster.local", any_of(a, kAddressType));
  const auto& svc = std::get<ServiceConfig>(r);
  EXPECT_EQ(resource_key(r), "shop/web.shop.svc.cluster.local");
  EXPECT_EQ(svc.vips.at(0).to_string(), "10.96.0.20");
  EXPECT_EQ(svc.ports, (PortMap{{80, 80}}));
  EXPECT_EQ(svc.load_balancing, ServiceConfig::LoadBalancing::Strict);
  EXPECT_TRUE(svc.node_local);
}

TEST(XdsTranslate, AnAuthorizationBecomesClausesOfMatches) {
  istio::security::Authorization a;
  a.set_name("istio_converted_static_strict");  // istiod's own name: not a Kubernetes name
  a.set_namespace_("istio-system");
  a.set_scope(istio::security::GLOBAL);
  a.set_action(istio::security::DENY);
  auto* clause = a.add_rules()->add_clauses();
  auto* m = clause->add_matches();
  m->add_not_principals()->mutable_presence();
  m->add_principals()->set_prefix("td/ns/a/");
  m->add_namespaces()->set_suffix("-prod");
  auto* sa = m->add_service_accounts();
  sa->set_namespace_("a");
  sa->set_serviceaccount("b");
  auto* ip = m->add_source_ips();
  ip->set_address(bytes({10, 0, 0, 0}));
  ip->set_length(8);
  m->add_destination_ports(8080);
  clause->add_matches();  // sets nothing: matches nothing, as in ztunnel
  const auto r = decode(kAuthorizationType, "istio-system/istio_converted_static_strict", any_of(a, kAuthorizationType));
  const auto& p = std::get<AuthorizationPolicy>(r);
  EXPECT_EQ(p.name, "istio_converted_static_strict");
  EXPECT_EQ(p.scope, AuthorizationPolicy::Scope::Global);
  EXPECT_EQ(p.action, AuthorizationPolicy::Action::Deny);
  ASSERT_EQ(p.rules.size(), 1u);
  ASSERT_EQ(p.rules[0].clauses.size(), 1u);
  const auto& matches = p.rules[0].clauses[0].matches;
  ASSERT_EQ(matches.size(), 2u);
  EXPECT_EQ(matches[0].not_principals, std::vector<std::string>{"*"});
  EXPECT_EQ(matches[0].principals, std::vector<std::string>{"td/ns/a/*"});
  EXPECT_EQ(matches[0].namespaces, std::vector<std::string>{"*-prod"});
  EXPECT_EQ(matches[0].service_accounts.at(0).name, "b");
  EXPECT_EQ(matches[0].ports, std::vector<uint16_t>{8080});
  EXPECT_TRUE(matches[1].empty()) << "a match that sets nothing stays one";
}

// ztunnel skips a match that sets nothing: an ALLOW made only of one allows nothing, a DENY
// made only of one denies nothing. Read as "matches everything", the ALLOW would open the pod
// to every peer.
TEST(XdsTranslate, AMatchThatSetsNothingOpensNothing) {
  auto config = std::make_shared<WorkloadConfig>();
  config->name = "db";
  config->namespace_ = "shop";
  const Workload server{config, SpiffeId{"cluster.local", "shop", "db"}, true};
  const AccessRequest request{SpiffeId{"cluster.local", "blog", "intruder"},
                              boost::asio::ip::make_address("10.9.9.9"), &server, 5432};
  for (const auto action : {istio::security::ALLOW, istio::security::DENY}) {
    istio::security::Authorization a;
    a.set_name("p");
    a.set_namespace_("shop");
    a.set_action(action);
    a.add_rules()->add_clauses()->add_matches();  // only extensions, or nothing at all
    const auto p = std::get<AuthorizationPolicy>(decode(kAuthorizationType, "shop/p", any_of(a, kAuthorizationType)));
    EXPECT_EQ(Authorizer({p}).decide(request).allowed, action == istio::security::DENY)
        << (action == istio::security::ALLOW ? "an empty ALLOW let a stranger in" : "an empty DENY denied");
  }
}

// Each of these is one bad resource: refused with what is wrong, never applied, never a crash.
TEST(XdsTranslate, EveryBadResourceIsRefusedWithItsReason) {
  struct Case {
    std::string what, type, name;
    google::protobuf::Any any;
    std::string expected;
  };
  std::vector<Case> cases;
  auto workload_case = [&](const std::string& what, auto change, const std::string& expected) {
    auto a = a_workload();
    change(*a.mutable_workload());
    cases.push_back({what, kAddressType, a.workload().uid(), any_of(a, kAddressType), expected});
  };
  workload_case("5-byte address", [](auto& w) { w.set_addresses(0, bytes({1, 2, 3, 4, 5})); },
                "addresses[0]: 5 bytes, an IP address has 4 or 16");
  workload_case("empty address", [](auto& w) { w.set_addresses(1, ""); }, "addresses[1]: 0 bytes");
  workload_case("unknown tunnel", [](auto& w) { w.set_tunnel_protocol(static_cast<istio::workload::TunnelProtocol>(9)); },
                "tunnel_protocol: unknown value 9");
  workload_case("unknown status", [](auto& w) { w.set_status(static_cast<istio::workload::WorkloadStatus>(7)); },
                "status: unknown value 7");
  workload_case("port 0", [](auto& w) { (*w.mutable_services())["shop/x"].add_ports()->set_service_port(0); },
                "service_port: port 0 is not 1..65535");
  workload_case("port too big", [](auto& w) { (*w.mutable_services())["shop/x"].add_ports()->set_service_port(70000); },
                "port 70000 is not 1..65535");
  workload_case("no namespace", [](auto& w) { w.set_namespace_(""); }, "workload.namespace: '' is not a Kubernetes name");
  workload_case("policy without namespace", [](auto& w) { w.add_authorization_policies("nonamespace"); },
                "authorization_policies[1]: 'nonamespace' is not");
  {
    auto a = a_workload();
    cases.push_back({"uid not the name", kAddressType, "other", any_of(a, kAddressType), "is not the resource name"});
  }
  cases.push_back({"garbage bytes", kAddressType, "x", [] {
                     google::protobuf::Any any;
                     any.set_type_url(kAddressType);
                     any.set_value("\xff\xff\xff");
                     return any;
                   }(), "is not a valid istio.workload.Address"});
  cases.push_back({"empty address", kAddressType, "x", any_of(istio::workload::Address(), kAddressType),
                   "neither a workload nor a service"});
  cases.push_back({"wrong type in the Any", kAddressType, "x", any_of(a_workload(), kAuthorizationType),
                   "in a response for"});
  {
    istio::security::Authorization a;
    a.set_name("p");
    a.set_namespace_("n");
    a.set_action(static_cast<istio::security::Action>(5));
    cases.push_back({"unknown action", kAuthorizationType, "n/p", any_of(a, kAuthorizationType), "action: unknown value 5"});
    a.set_action(istio::security::ALLOW);
    auto* ip = a.add_rules()->add_clauses()->add_matches()->add_source_ips();
    ip->set_address(bytes({10, 0, 0, 0}));
    ip->set_length(33);
    cases.push_back({"prefix too long", kAuthorizationType, "n/p", any_of(a, kAuthorizationType),
                     "source_ips[0].length: 33 is longer than the address"});
    a.mutable_rules(0)->mutable_clauses(0)->mutable_matches(0)->clear_source_ips();
    a.mutable_rules(0)->mutable_clauses(0)->mutable_matches(0)->add_principals();
    cases.push_back({"match with no match_type", kAuthorizationType, "n/p", any_of(a, kAuthorizationType),
                     "principals[0]: sets no match"});
    a.clear_rules();
    a.set_name("a/b");
    cases.push_back({"slash in name", kAuthorizationType, "n/a/b", any_of(a, kAuthorizationType), "has a '/'"});
  }
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string why = refusal(c.type, c.name, c.any);
    EXPECT_NE(why.find(c.expected), std::string::npos) << why;
  }
}

}  // namespace
}  // namespace zmesh::xds
