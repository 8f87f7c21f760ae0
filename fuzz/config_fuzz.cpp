// The config parser on arbitrary bytes: it either throws ConfigError or yields a config that
// builds a mesh (or is refused with ConfigError), writes back to JSON that parses to the same
// JSON (the runtime layer's file depends on it), and whose kernel deny entries the authorizer
// denies.
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "zmesh/config.h"
#include "zmesh/mesh.h"
#include "zmesh/policy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  zmesh::MeshConfig config;
  try {
    config = zmesh::parse_config(text);
  } catch (const zmesh::ConfigError&) {
    return 0;
  }
  const auto written = zmesh::to_json(config);
  try {
    if (zmesh::to_json(zmesh::parse_config(written.dump())) != written) std::abort();  // round trip lost something
  } catch (const zmesh::ConfigError&) {
    std::abort();  // what we wrote, we must read back
  }
  try {
    const zmesh::Mesh mesh(config, "cluster.local", "node1");
    const zmesh::Authorizer authorizer(config.policies);
    for (const auto& d : authorizer.kernel_denies(mesh)) {
      const auto* w = mesh.by_ip(d.destination);
      if (!w) std::abort();
      if (authorizer.decide({std::nullopt, d.source.address, w, d.port ? d.port : uint16_t{1}}).allowed)
        std::abort();  // the kernel would drop what the policy allows
    }
  } catch (const zmesh::ConfigError&) {
  }
  return 0;
}
