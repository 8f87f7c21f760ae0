// The policy matcher: the first bytes pick a request (source identity or plaintext, source
// address, destination, port), the rest is a policies list. Decisions must not crash, must be
// the same twice, and a DENY that matches must never be overruled; every policy that parses
// must read back from its own JSON unchanged (listings and the runtime layer's file).
#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "zmesh/config.h"
#include "zmesh/mesh.h"
#include "zmesh/policy.h"

namespace {
const char* kWorkloads = R"({"workloads": [
  {"name": "web", "namespace": "shop", "serviceAccount": "web", "node": "node1", "workloadIps": ["10.0.0.1", "fd00::1"]},
  {"name": "db", "namespace": "shop", "serviceAccount": "db", "node": "node1", "workloadIps": ["10.0.0.2"]},
  {"name": "x", "namespace": "other", "node": "node1", "workloadIps": ["10.0.0.3"]}], "policies": )";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  const std::string policies(reinterpret_cast<const char*>(data) + 8, size - 8);
  zmesh::MeshConfig config;
  try {
    config = zmesh::parse_config(std::string(kWorkloads) + policies + "}");
  } catch (const zmesh::ConfigError&) {
    return 0;
  }
  for (const auto& policy : config.policies)
    if (zmesh::parse_policy(zmesh::to_json(policy), "again") != policy) std::abort();
  const zmesh::Mesh mesh(config, "cluster.local", "node1");
  const zmesh::Authorizer authorizer(config.policies);
  static const char* kSa[] = {"web", "db", "admin", "x"};
  static const char* kNs[] = {"shop", "other", "istio-system", "a"};
  std::optional<zmesh::SpiffeId> source;
  if (data[0] & 1) source = zmesh::SpiffeId{"cluster.local", kNs[data[1] % 4], kSa[data[2] % 4]};
  const auto ip = (data[0] & 2) ? boost::asio::ip::address(boost::asio::ip::address_v4({10, 0, data[3], data[4]}))
                                : boost::asio::ip::make_address("fd00::" + std::to_string(data[3]));
  const auto* destination = mesh.by_ip(boost::asio::ip::address_v4({10, 0, 0, static_cast<uint8_t>(1 + data[5] % 3)}));
  const uint16_t port = static_cast<uint16_t>(data[6] << 8 | data[7]);
  const zmesh::AccessRequest request{source, ip, destination, port};
  const auto first = authorizer.decide(request), second = authorizer.decide(request);
  if (first.allowed != second.allowed || first.reason != second.reason) std::abort();
  if (first.allowed && first.reason.rfind("denied", 0) == 0) std::abort();
  return 0;
}
