// What zmeshd uses of istiod (issue 16), without gRPC: the settings, the xDS feed and the CA as
// interfaces, and the loader of the module that implements them (zmesh-istiod.so, issue 18).
//
// Why a module: gRPC, protobuf and abseil are some fifty shared libraries, and only mapping them
// cost zmeshd 6 MiB of resident memory (21.7 -> 15.3 MiB idle), whether istiod fed it or not.
// zmeshd loads the module only when --xds-address (or --xds-root-cert) is given; a zmeshd fed by
// its config file or by the CNI never maps them.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "zmesh/certificates.h"
#include "zmesh/config.h"

namespace zmesh::xds {

struct IstiodSettings {
  std::string address = "istiod.istio-system.svc:15012";  // host:port
  std::filesystem::path root_cert = "/var/run/secrets/istio/root-cert.pem";
  std::filesystem::path token;  // empty: no authorization header
  std::string cluster_id = "Kubernetes";
  // The name istiod's certificate must carry; empty: the host of `address`.
  std::string server_name;
};

class IstiodError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Who asks: ztunnel's Node id and metadata, so istiod treats zmeshd as it treats ztunnel.
struct NodeIdentity {
  std::string pod_name, pod_namespace = "istio-system", instance_ip = "1.1.1.1", node_name;
};

inline constexpr const char* kAddressType = "type.googleapis.com/istio.workload.Address";
inline constexpr const char* kAuthorizationType = "type.googleapis.com/istio.security.Authorization";

using Resource = std::variant<WorkloadConfig, ServiceConfig, AuthorizationPolicy>;

// One response's worth of change, for one type.
struct Delta {
  std::string type_url;
  std::vector<Resource> updated;
  std::vector<std::string> removed;  // resource names
};

// The key the controller's xDS layer and removals use: the resource name.
inline std::string resource_key(const Resource& resource) {
  struct {
    std::string operator()(const WorkloadConfig& w) const { return w.uid; }
    std::string operator()(const ServiceConfig& s) const { return s.namespace_ + "/" + s.hostname; }
    std::string operator()(const AuthorizationPolicy& p) const { return key_of(p); }
  } key;
  return std::visit(key, resource);
}

// Per type; read from other threads (metrics), written by the stream's thread.
struct TypeStats {
  std::atomic<uint64_t> received{0}, applied{0}, nacked{0}, resources{0};
  std::atomic<int64_t> last_update_unix{0};  // the last applied response, seconds
};

// The delta xDS stream to istiod (xds_client.h says how it behaves).
class Feed {
 public:
  // Returns "" when the change is in force, else why it was refused (then nothing of it is).
  using Apply = std::function<std::string(Delta)>;  // taken whole: a full snapshot is large
  virtual ~Feed() = default;  // stops

  virtual void start() = 0;
  virtual void stop() = 0;
  virtual bool connected() const = 0;
  virtual uint64_t connects() const = 0;
  // Both types have had a response applied and ACKed since start.
  virtual bool synced() const = 0;
  virtual const TypeStats& stats(const std::string& type_url) const = 0;
  virtual std::string last_error() const = 0;
};

// The module's entry points.
struct Istiod {
  // The xDS stream, not started.
  virtual std::unique_ptr<Feed> feed(IstiodSettings settings, NodeIdentity node, Feed::Apply apply) const = 0;
  // istiod's CA as the certificates' source (ca_client.h). Throws IstiodError when the root
  // file cannot be read or `validity` is not positive.
  virtual Certificates::Source ca(IstiodSettings settings, std::chrono::seconds validity) const = 0;
  // CreateCertificate calls that failed, in this process (a metric).
  virtual uint64_t ca_failures() const = 0;

 protected:
  ~Istiod() = default;
};

// The module's C entry point. zmeshd and the module are built together; one of another build is
// refused, not called: it must implement this interface's version and agree on the layout of
// what crosses (the config types inside Delta, the settings, the certificates), which a change
// to zmesh/config.h without a version bump would alter.
inline constexpr const char* kIstiodEntryPoint = "zmesh_istiod";
inline constexpr int kIstiodInterfaceVersion = 1;
constexpr uint64_t istiod_layout() {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the sizes
  for (const uint64_t size : {sizeof(IstiodSettings), sizeof(NodeIdentity), sizeof(Delta), sizeof(Resource),
                              sizeof(WorkloadConfig), sizeof(ServiceConfig), sizeof(AuthorizationPolicy),
                              sizeof(TypeStats), sizeof(Certificate), sizeof(SpiffeId), sizeof(Feed::Apply)})
    h = (h ^ size) * 1099511628211ull;
  return h;
}
// Returns null when `interface_version` or `layout` is not its own.
using IstiodEntryPoint = const Istiod* (*)(int interface_version, uint64_t layout);

// Where zmeshd looks for the module: ../lib/zmesh/zmesh-istiod.so from its own executable (the
// build tree and the image have that layout).
std::filesystem::path istiod_module_path();
// Loads the module once and returns it. Throws IstiodError saying which file and why (missing,
// unreadable, a library of its own missing, another build).
const Istiod& istiod();

}  // namespace zmesh::xds
