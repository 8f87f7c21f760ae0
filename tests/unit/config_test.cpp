// The mesh config parser: good files load; every bad value is named with its JSON path.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "zmesh/config.h"
#include "zmesh/json.h"
#include "zmesh/mesh.h"

namespace zmesh {
namespace {

TEST(Config, LoadsWorkloadsAndServices) {
  auto config = parse_config(R"({
    "workloads": [{"name": "app1", "namespace": "shop", "serviceAccount": "app1-sa", "node": "node1",
                   "workloadIps": ["10.244.1.2", "fd00:244:1::2"], "protocol": "HBONE", "mtlsMode": "STRICT",
                   "cgroup": "/sys/fs/cgroup/pod1", "hostVeth": "vpod1"},
                  {"name": "db", "namespace": "shop", "node": "node2"}],
    "services": [{"name": "app", "namespace": "shop", "hostname": "app.shop.svc.cluster.local",
                  "vips": ["10.96.0.10"]}]
  })");
  ASSERT_EQ(config.workloads.size(), 2u);
  const auto& app = config.workloads[0];
  EXPECT_EQ(app.uid, "shop/app1");
  EXPECT_EQ(app.service_account, "app1-sa");
  EXPECT_EQ(app.ips.size(), 2u);
  EXPECT_TRUE(app.ips[1].is_v6());
  EXPECT_TRUE(app.mtls_strict);
  EXPECT_EQ(app.host_veth, "vpod1");
  EXPECT_EQ(config.workloads[1].service_account, "default");
  EXPECT_TRUE(config.workloads[1].mtls_strict) << "mTLS is required unless a workload says PERMISSIVE";
  ASSERT_EQ(config.services.size(), 1u);
  EXPECT_EQ(config.services[0].vips[0].to_string(), "10.96.0.10");
}

TEST(Config, EachMistakeIsNamedWithItsPath) {
  struct Case {
    const char* json;
    const char* message;
  } cases[] = {
      {"{", "not valid JSON"},
      {"[]", "(top level): expected an object"},
      {R"({"workload": []})", "(top level).workload: unknown field"},
      {R"({"workloads": {}})", "workloads: expected a list"},
      {R"({"workloads": [{"namespace": "a", "node": "n"}]})", "workloads[0].name: missing"},
      {R"({"workloads": [{"name": 5, "namespace": "a", "node": "n"}]})", "workloads[0].name: expected a string"},
      {R"({"workloads": [{"name": "a", "namespace": "a", "node": "n", "workloadIps": ["10.0.0.1", "10.0.0.300"]}]})",
       "workloads[0].workloadIps[1]: '10.0.0.300' is not an IP address"},
      {R"({"workloads": [{"name": "a", "namespace": "a", "node": "n", "workloadIps": "10.0.0.1"}]})",
       "workloads[0].workloadIps: expected a list of IP addresses"},
      {R"({"workloads": [{"name": "a", "namespace": "a", "node": "n", "mtlsMode": "strict"}]})",
       "workloads[0].mtlsMode: expected \"STRICT\" or \"PERMISSIVE\", got \"strict\""},
      {R"({"workloads": [{"name": "a", "namespace": "a", "node": "n", "protocol": "UDP"}]})",
       "workloads[0].protocol: expected \"HBONE\" or \"TCP\""},
      {R"({"services": [{"name": "s", "namespace": "a", "vips": ["x"]}]})", "services[0].vips[0]: 'x' is not an IP"},
      {R"({"workloads": [{"name": "a", "namespace": "a", "node": "n", "waypoint": "10.0.0.9"}]})",
       "workloads[0].waypoint: '10.0.0.9' is not IP:PORT, [IPv6]:PORT or namespace/hostname:PORT"},
      {R"({"services": [{"name": "s", "namespace": "a", "waypoint": "fd00::9:15008"}]})",
       "services[0].waypoint: 'fd00::9:15008' is not IP:PORT"},
  };
  for (const auto& c : cases) {
    try {
      parse_config(c.json);
      ADD_FAILURE() << "accepted: " << c.json;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << "got: " << e.what();
    }
  }
}

// The three ways istiod (translate.cpp's gateway_text) and the config name a waypoint, and what
// is none of them.
TEST(Config, WaypointsAreAnAddressOrAServiceWithAPort) {
  const auto by_ip = parse_waypoint("10.96.0.50:15008");
  ASSERT_TRUE(by_ip);
  EXPECT_EQ(by_ip->ip->to_string(), "10.96.0.50");
  EXPECT_EQ(by_ip->port, 15008);
  const auto by_ip6 = parse_waypoint("[fd00:96::50]:15009");
  ASSERT_TRUE(by_ip6);
  EXPECT_EQ(by_ip6->ip->to_string(), "fd00:96::50");
  EXPECT_EQ(by_ip6->port, 15009);
  const auto by_name = parse_waypoint("istio-system/waypoint.istio-system.svc.cluster.local:15008");
  ASSERT_TRUE(by_name);
  EXPECT_FALSE(by_name->ip);
  EXPECT_EQ(by_name->service, "istio-system/waypoint.istio-system.svc.cluster.local");
  for (const char* bad : {"", "10.96.0.50", "10.96.0.50:", "10.96.0.50:0", "10.96.0.50:65536", "10.96.0.50:80x",
                          "fd00::50:15008", "[10.96.0.50]:15008", "ns/:15008", "/host:15008", "a/b/c:15008",
                          "waypoint:15008", "10.96.0.50:1500800"})
    EXPECT_FALSE(parse_waypoint(bad)) << bad;
}

TEST(Config, ServicesMapPortsToEndpointsAndAreChecked) {
  const auto config = parse_config(R"({
    "workloads": [{"name": "a", "namespace": "shop", "node": "n1", "workloadIps": ["10.0.0.2"]}],
    "services": [{"name": "web", "namespace": "shop", "vips": ["10.96.0.1"], "ports": {"80": 8080, "443": 8443},
                  "endpoints": ["a"]}]})");
  ASSERT_EQ(config.services.size(), 1u);
  EXPECT_EQ(config.services[0].ports.at(80), 8080);
  EXPECT_EQ(config.services[0].ports.at(443), 8443);
  const Mesh mesh(config, "cluster.local", "n1");
  const auto* web = mesh.service_by_vip(boost::asio::ip::make_address("10.96.0.1"));
  ASSERT_NE(web, nullptr);
  ASSERT_EQ(web->endpoints.size(), 1u);
  EXPECT_EQ(web->endpoints[0]->config.name, "a");

  struct Case {
    const char* json;
    const char* message;
  } cases[] = {
      {R"({"services": [{"name": "s", "namespace": "a", "ports": [80]}]})", "services[0].ports: expected an object"},
      {R"({"services": [{"name": "s", "namespace": "a", "ports": {"http": 80}}]})",
       "services[0].ports.http: the service port must be 1..65535"},
      {R"({"services": [{"name": "s", "namespace": "a", "ports": {"80": "8080"}}]})",
       "services[0].ports.80: the target port must be a number"},
  };
  for (const auto& c : cases) {
    try {
      parse_config(c.json);
      ADD_FAILURE() << "accepted: " << c.json;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << "got: " << e.what();
    }
  }
  const auto unknown = parse_config(R"({"services": [{"name": "s", "namespace": "a", "endpoints": ["ghost"]}]})");
  try {
    Mesh(unknown, "cluster.local", "n1");
    FAIL() << "an endpoint that is no workload was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("endpoints: no workload 'ghost' in namespace 'a'"),
              std::string::npos)
        << e.what();
  }
}

TEST(Config, FileErrorsNameTheFile) {
  try {
    load_config("/nonexistent/zmesh.json");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/zmesh.json: cannot read"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace zmesh

namespace zmesh {
namespace {

// What the control socket lists and the runtime layer's file keeps must read back the same.
TEST(Config, WritesBackTheShapeItReads) {
  const std::string text = R"({
    "workloads": [{"uid": "u1", "name": "app1", "namespace": "shop", "serviceAccount": "sa1", "node": "node1",
                   "workloadIps": ["10.244.1.2", "fd00:244:1::2"], "protocol": "TCP", "mtlsMode": "PERMISSIVE",
                   "cgroup": "/sys/fs/cgroup/pod1", "hostVeth": "vpod1"}],
    "services": [{"name": "app", "namespace": "shop", "hostname": "app.shop", "vips": ["10.96.0.10"],
                  "ports": {"80": 8080, "443": 8443}, "endpoints": ["app1"]}],
    "policies": [{"name": "p", "namespace": "shop", "action": "DENY", "selector": {"workloads": ["app1"]},
                  "rules": [{"from": [{"source": {"principals": ["td/ns/a/sa/b"], "notPrincipals": ["x*"],
                                                  "namespaces": ["a"], "notNamespaces": ["*b"],
                                                  "ipBlocks": ["10.0.0.0/8"], "notIpBlocks": ["10.1.0.0/16"]}}],
                             "to": [{"operation": {"ports": ["80"], "notPorts": ["81"]}}]}]}]
  })";
  const MeshConfig config = parse_config(text);
  const auto written = to_json(config);
  EXPECT_EQ(to_json(parse_config(written.dump())), written);
  EXPECT_EQ(written["workloads"][0]["protocol"], "TCP");
  EXPECT_EQ(written["workloads"][0]["mtlsMode"], "PERMISSIVE");
  EXPECT_EQ(written["policies"][0]["rules"][0]["from"][0]["source"]["ipBlocks"][0], "10.0.0.0/8");
  EXPECT_EQ(written["services"][0]["ports"]["443"], 8443);
}

TEST(Config, TwoEntriesWithOneNameAreRejected) {
  for (const auto& [json, expected] : std::vector<std::pair<std::string, std::string>>{
           {R"({"workloads": [{"name": "a", "namespace": "n", "node": "x"}, {"name": "a", "namespace": "n", "node": "y"}]})",
            "workloads[1]: 'n/a' is already defined at workloads[0]"},
           {R"({"policies": [{"name": "p", "namespace": "n"}, {"name": "q", "namespace": "n"}, {"name": "p", "namespace": "n"}]})",
            "policies[2]: 'n/p' is already defined at policies[0]"},
           {R"({"services": [{"name": "s", "namespace": "n"}, {"name": "s", "namespace": "n"}]})",
            "services[1]: 'n/s' is already defined at services[0]"}}) {
    try {
      parse_config(json);
      ADD_FAILURE() << "accepted: " << json;
    } catch (const ConfigError& e) {
      EXPECT_EQ(std::string(e.what()), expected);
    }
  }
  // The same name in two namespaces is two entries.
  EXPECT_EQ(parse_config(R"({"workloads": [{"name": "a", "namespace": "n1", "node": "x"},
                                           {"name": "a", "namespace": "n2", "node": "x"}]})")
                .workloads.size(),
            2u);
}

}  // namespace
}  // namespace zmesh

namespace zmesh {
namespace {

// Found by fuzz/config_fuzz: nlohmann throws out_of_range (not parse_error) for a number too big.
TEST(Config, ANumberTooBigIsInvalidJsonNotACrash) {
  try {
    parse_config(R"({"workloads": [{"name": 3e5796}]})");
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace zmesh

namespace zmesh {
namespace {

// A key twice in one object: JSON parsers keep one silently (nlohmann the last), so the file
// would not mean what it says. Refused, with where.
TEST(Config, DuplicateKeysAreRefusedWithTheirPath) {
  struct Case {
    const char* json;
    const char* message;
  } cases[] = {
      {R"({"workloads": [], "workloads": []})", "duplicate key \"workloads\" in the top level"},
      {R"({"workloads": [{"name": "a", "namespace": "n", "node": "x", "name": "b"}]})",
       "duplicate key \"name\" in workloads[0]"},
      {R"({"policies": [{"name": "p", "namespace": "n", "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/8"],
          "ipBlocks": []}}]}]}]})",
       "duplicate key \"ipBlocks\" in policies[0].rules[0].from[0].source"},
  };
  for (const auto& c : cases) {
    try {
      parse_config(c.json);
      ADD_FAILURE() << "accepted: " << c.json;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << "got: " << e.what();
    }
  }
  EXPECT_NO_THROW(parse_config(R"({"workloads": [{"name": "a", "namespace": "n", "node": "x"},
                                                 {"name": "b", "namespace": "n", "node": "x"}]})"))
      << "the same key in two objects is fine";
}

// One byte that is not UTF-8: refused, and the message can be serialised (it once became
// lastFailure and broke every later control reply).
TEST(Config, BytesThatAreNotUtf8AreRefusedWithAMessageThatIsItselfValid) {
  for (const std::string& text : {std::string("{\"workloads\": [{\"name\": \"a\xff\"}]}"), std::string("\xff"),
                                 std::string("{\"workloads\": [{\"name\": \"\xc3\x28\"}]}")}) {
    try {
      parse_config(text);
      ADD_FAILURE() << "accepted invalid UTF-8";
    } catch (const ConfigError& e) {
      const std::string message = e.what();
      EXPECT_EQ(printable(message), message) << "the message carries no raw byte";
      EXPECT_NO_THROW(nlohmann::json({{"lastFailure", message}}).dump()) << message;
    }
  }
}

// Pod, namespace and account names are Kubernetes names: a '/' once enrolled a pod that its
// "namespace/name" key could never unenroll.
TEST(Config, NamesAreKubernetesNames) {
  struct Case {
    const char* json;
    const char* message;
  } cases[] = {
      {R"({"workloads": [{"name": "a/b", "namespace": "n", "node": "x"}]})", "workloads[0].name: 'a/b' is not a Kubernetes name"},
      {R"({"workloads": [{"name": "a", "namespace": "n.s", "node": "x"}]})", "workloads[0].namespace: 'n.s'"},
      {R"({"workloads": [{"name": "-a", "namespace": "n", "node": "x"}]})", "workloads[0].name: '-a'"},
      {R"({"workloads": [{"name": "a", "namespace": "n", "node": "x", "serviceAccount": "S A"}]})",
       "workloads[0].serviceAccount: 'S A'"},
      {R"({"services": [{"name": "web.x", "namespace": "n"}]})", "services[0].name: 'web.x'"},
  };
  for (const auto& c : cases) {
    try {
      parse_config(c.json);
      ADD_FAILURE() << "accepted: " << c.json;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << "got: " << e.what();
    }
  }
  EXPECT_NO_THROW(parse_config(R"({"workloads": [{"name": "web-5d8f.x1", "namespace": "shop-2", "node": "ip-10-0-0-1.ec2",
                                                  "serviceAccount": "web.sa"}]})"));
}

TEST(Json, PrintableReplacesWhatIsNotUtf8AndShowsControlCharacters) {
  EXPECT_EQ(printable("plain ascii"), "plain ascii");
  EXPECT_EQ(printable("caf\xc3\xa9"), "caf\xc3\xa9") << "valid UTF-8 stays";
  EXPECT_EQ(printable("a\xff" "b"), "a\xef\xbf\xbd" "b");
  EXPECT_EQ(printable("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd") << "a surrogate is not UTF-8";
  EXPECT_EQ(printable("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd") << "nor an overlong '/'";
  EXPECT_EQ(printable("a\x01" "b"), "a\\x01b");
  EXPECT_EQ(json_text(nlohmann::json("bad \xff")), "\"bad \xef\xbf\xbd\"") << "output never throws";
}

}  // namespace
}  // namespace zmesh

namespace zmesh {
namespace {

// What istiod says of workloads and services (issue 16) has a JSON spelling too: the config
// file can say it, and listings show it back unchanged.
TEST(Config, WhatXdsSaysOfWorkloadsAndServicesReadsBack) {
  const MeshConfig config = parse_config(R"({
    "workloads": [{"uid": "c1//Pod/shop/web-1", "name": "web-1", "namespace": "shop", "node": "n1",
                   "workloadIps": ["10.244.1.5"], "trustDomain": "other.example", "network": "net1",
                   "canonicalName": "web", "canonicalRevision": "v2", "workloadName": "web",
                   "waypoint": "10.96.0.99:15008", "status": "UNHEALTHY",
                   "services": {"shop/web.shop.svc.cluster.local": {"80": 9090}},
                   "authorizationPolicies": ["shop/only-frontend"]}],
    "services": [{"name": "web", "namespace": "shop", "hostname": "web.shop.svc.cluster.local",
                  "vips": ["10.96.0.20"], "ports": {"80": 8080}, "loadBalancing": "STRICT", "nodeLocal": true}]
  })");
  const auto& w = config.workloads.at(0);
  EXPECT_EQ(w.trust_domain, "other.example");
  EXPECT_EQ(w.canonical_revision, "v2");
  EXPECT_FALSE(w.healthy);
  EXPECT_EQ(w.services.at("shop/web.shop.svc.cluster.local").at(80), 9090);
  EXPECT_EQ(config.services.at(0).load_balancing, ServiceConfig::LoadBalancing::Strict);
  EXPECT_TRUE(config.services.at(0).node_local);
  const MeshConfig again = parse_config(to_json(config).dump());
  EXPECT_EQ(again.workloads, config.workloads);
  EXPECT_EQ(again.services, config.services);

  for (const auto& [text, expected] : std::vector<std::pair<std::string, std::string>>{
           {R"({"workloads": [{"name": "a", "namespace": "n", "node": "x", "status": "SICK"}]})", "workloads[0].status: expected"},
           {R"({"workloads": [{"name": "a", "namespace": "n", "node": "x", "services": {"nohost": {}}}]})",
            "workloads[0].services.nohost: expected \"<namespace>/<hostname>\""},
           {R"({"workloads": [{"name": "a", "namespace": "n", "node": "x", "trustDomain": "Not A Domain"}]})",
            "workloads[0].trustDomain: 'Not A Domain' is not a trust domain"},
           {R"({"services": [{"name": "s", "namespace": "n", "loadBalancing": "RANDOM"}]})",
            "services[0].loadBalancing: expected \"STRICT\""}}) {
    try {
      parse_config(text);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  }
}

// xDS workloads name the services they serve, with their own target ports (named ports resolve
// per pod); a service need not list them, and an endpoint named both ways counts once.
TEST(Mesh, ServicesFindTheirEndpointsThroughTheWorkloadsThatNameThem) {
  const MeshConfig config = parse_config(R"({
    "workloads": [{"name": "web-1", "namespace": "shop", "node": "n1", "workloadIps": ["10.244.1.5"],
                   "services": {"shop/web.shop.svc.cluster.local": {"80": 9090}}},
                  {"name": "web-2", "namespace": "shop", "node": "n2", "workloadIps": ["10.244.2.5"],
                   "services": {"shop/web.shop.svc.cluster.local": {}, "shop/not-yet-known": {"1": 1}}}],
    "services": [{"name": "web", "namespace": "shop", "hostname": "web.shop.svc.cluster.local",
                  "vips": ["10.96.0.20"], "ports": {"80": 8080}, "endpoints": ["web-2"]}]
  })");
  const Mesh mesh(config, "cluster.local", "n1");
  const Service* web = mesh.service_by_vip(boost::asio::ip::make_address("10.96.0.20"));
  ASSERT_NE(web, nullptr);
  EXPECT_EQ(web->key, "shop/web.shop.svc.cluster.local");
  ASSERT_EQ(web->endpoints.size(), 2u);
  const Workload* web1 = mesh.by_ip(boost::asio::ip::make_address("10.244.1.5"));
  const Workload* web2 = mesh.by_ip(boost::asio::ip::make_address("10.244.2.5"));
  EXPECT_EQ(web->target_port(*web1, 80), 9090) << "the endpoint's own port wins";
  EXPECT_EQ(web->target_port(*web2, 80), 8080) << "else the service's";
  EXPECT_EQ(web->target_port(*web1, 81), std::nullopt);
  EXPECT_EQ(mesh.service_for(*web1, 9090), web);
  EXPECT_EQ(mesh.service_for(*web1, 8080), nullptr);
}

// One owner per address, also within one entry: a workload or a service listing an address
// twice (or as its IPv4-mapped form) is refused by name.
TEST(Mesh, AnAddressListedTwiceByOneEntryIsRefused) {
  for (const auto& [text, expected] : std::vector<std::pair<std::string, std::string>>{
           {R"({"workloads": [{"name": "a", "namespace": "n", "node": "x", "workloadIps": ["10.0.0.1", "::ffff:10.0.0.1"]}]})",
            "workload n/a: IP 10.0.0.1 is listed twice"},
           {R"({"services": [{"name": "s", "namespace": "n", "vips": ["10.96.0.1", "10.96.0.1"]}]})",
            "service n/s.n: IP 10.96.0.1 is listed twice"}}) {
    try {
      const Mesh mesh(parse_config(text), "cluster.local", "x");
      ADD_FAILURE() << "accepted: " << text;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace zmesh
