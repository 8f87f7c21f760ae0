// The daemon's control path, the only writer of the mesh state. The effective config has three
// layers, later ones winning for the same namespace/name (a service: namespace/hostname): the
// config file; istiod's resources over xDS (when zmeshd has an --xds-address); the runtime
// layer (workloads and policies added over the control socket, kept in STATE_DIR/runtime.json).
// A pod the CNI plugin enrolled for an identity from xDS is paired with its xDS Workload (same
// namespace/name and addresses): istiod's identity, policies and labels, the node's cgroup and
// veth. Every change goes through apply(): check the whole merged config, issue
// certificates for new local identities, bring the kernel maps to match (additions before
// removals, so a pod is never left uncaptured), publish the new snapshot, and have the proxy
// close open connections the new policies deny. A change that fails leaves the last good
// state in place and says why.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "zmesh/certificates.h"
#include "zmesh/config.h"
#include "zmesh/datapath.h"
#include "zmesh/state.h"
#include "zmesh/proxy.h"
#include "translate.h"

namespace zmesh {

struct ControllerOptions {
  std::string node;
  std::string trust_domain;
  std::filesystem::path config_path;   // empty = no file
  std::filesystem::path runtime_path;  // empty = runtime changes are not kept across restarts
  bool has_outbound_ip6 = false;
  std::vector<IpBlock> pod_cidrs;  // the cluster's (--pod-cidr): pods inside are captured by CIDR
};

class Controller {
 public:
  Controller(ControllerOptions options, Datapath& datapath, MeshState& state, Certificates* certificates);

  // What start() applies: the config file and the runtime layer, read and checked as apply()
  // checks a change, with nothing touched. zmeshd reads it before the datapath pins anything,
  // so a bad file stops start-up with nothing changed on the node. Throws ConfigError.
  struct Initial {
    MeshConfig file, runtime;
    std::string file_text;
    bool runtime_pruned = false;  // pods that left while no zmeshd ran were dropped from it
  };
  static Initial load(const ControllerOptions& options);
  // The largest config file read; a bigger one is refused (a runaway generator, a wrong path).
  static constexpr uintmax_t kMaxFileBytes = 64u << 20;

  // Start-up: applies what load() read.
  void start(Initial initial);
  void set_proxy(Proxy* proxy) { proxy_ = proxy; }
  // What status() says of the xDS stream (zmeshd's xDS client); none: no "xdsStream".
  void set_xds_status(std::function<nlohmann::json()> xds_status) { xds_status_ = std::move(xds_status); }

  // Re-reads the config file. `force` = also when its text did not change (SIGHUP). On error
  // the current state stays and ConfigError says why. Returns whether anything was applied.
  bool reload_file(bool force);

  // Unenrolls runtime pods of this node whose cgroup is gone (their DEL never came: zmeshd was
  // busy or unreachable), so their addresses are free for the next pod. Returns how many.
  size_t drop_vanished_pods();

  // Runtime changes; each throws ConfigError (nothing changed) when the result would be bad.
  void enroll(const WorkloadConfig& workload);
  void unenroll(const std::string& key);  // "namespace/name"
  void apply_policy(const AuthorizationPolicy& policy);
  void delete_policy(const std::string& key);
  // istiod's change of one type; "" when it is in force, else why it was refused (then nothing
  // of it is, and the xDS client NACKs it).
  std::string apply_xds(const xds::Delta& delta);

  // For the control socket and /config_dump.
  nlohmann::json status() const;
  nlohmann::json workloads() const;
  nlohmann::json services() const;
  nlohmann::json policies() const;
  nlohmann::json certificates() const;
  const std::string& node() const { return options_.node; }

 private:
  // What the kernel holds for one merged config.
  struct Kernel {
    std::map<std::string, WorkloadAttachment> enrolled;  // by namespace/name
    std::map<IpAddress, DestinationKind> destinations;
    std::vector<DenyRule> deny;
  };
  struct XdsLayer {
    std::map<std::string, WorkloadConfig> workloads;      // by uid
    std::map<std::string, ServiceConfig> services;        // by namespace/hostname
    std::map<std::string, AuthorizationPolicy> policies;  // by namespace/name
  };
  static MeshConfig merge(const MeshConfig& file, const XdsLayer& xds, const MeshConfig& runtime);
  void apply(MeshConfig file, XdsLayer xds, MeshConfig runtime, const std::string& cause);
  static Kernel kernel_for(const MeshSnapshot& snapshot, const ControllerOptions& options);
  static void check(const MeshConfig& config, const ControllerOptions& options);
  void reconcile(const Kernel& from, const Kernel& to);
  void save_runtime(const MeshConfig& runtime) const;
  template <typename T>
  void put_runtime(std::vector<T> MeshConfig::*list, const T& item, const std::string& cause);
  template <typename T>
  void remove_runtime(std::vector<T> MeshConfig::*list, const std::string& key, const char* what,
                      const std::string& cause);
  static bool cgroup_gone(const WorkloadConfig& w, const std::string& node);
  std::string source_of(const WorkloadConfig& w) const;
  std::string source_of_policy(const std::string& key) const;

  ControllerOptions options_;
  Datapath& datapath_;
  MeshState& state_;
  Certificates* certificates_;
  Proxy* proxy_ = nullptr;
  std::function<nlohmann::json()> xds_status_;
  MeshConfig file_, runtime_;
  XdsLayer xds_;
  // The file as last read (applied or refused) and its inode, size and mtime: a change in its
  // directory that is not a change of the file (a log beside it) reads nothing, and a refused
  // text is not refused again until it changes.
  std::string file_text_;
  struct FileStamp {
    uintmax_t inode = 0, size = 0;
    int64_t mtime_ns = 0;
    auto operator<=>(const FileStamp&) const = default;
  } file_stamp_;
  static FileStamp stamp_of(const std::filesystem::path& path);
  Kernel kernel_;
  uint64_t generation_ = 0;
  bool runtime_saved_ = true;  // false after a save failed: the next change saves again
  static constexpr size_t kKernelDenyCapacity = ZM_MAX_DENY;  // zm_l4_deny's max_entries
  static constexpr size_t kKernelDestinationCapacity = ZM_MAX_DESTS;  // zm_dests'

  struct Change {
    std::string cause, error;
    std::chrono::system_clock::time_point at;
  };
  Change last_change_, last_failure_;
  uint64_t rejected_ = 0;       // config texts refused (each text once)
  uint64_t file_checks_ = 0;    // reload_file calls: a change in the file's directory, SIGHUP
};

}  // namespace zmesh
