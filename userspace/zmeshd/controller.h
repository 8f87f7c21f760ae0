// The daemon's control path, the only writer of the mesh state. The effective config has three
// layers, later ones winning for the same namespace/name (a service: namespace/hostname): the
// config file; istiod's resources over xDS (when zmeshd has an --xds-address); the runtime
// layer (workloads and policies added over the control socket, kept in STATE_DIR/runtime.json).
// A pod the CNI plugin enrolled for an identity from xDS is paired with its xDS Workload (same
// namespace/name and addresses): istiod's identity, policies and labels, the node's cgroup and
// veth. Every change goes through apply(): take the entries it touches again from the layers
// into a copy of the last snapshot (one change costs the same in a cluster of any size), check
// them, issue certificates for new local identities, bring the kernel maps to match (additions before
// removals, so a pod is never left uncaptured), publish the new snapshot, and have the proxy
// close open connections the new policies deny. A change that fails leaves the last good
// state in place and says why.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "zmesh/certificates.h"
#include "zmesh/config.h"
#include "zmesh/datapath.h"
#include "zmesh/state.h"
#include "zmesh/proxy.h"
#include "zmesh/shared_map.h"
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
  std::string apply_xds(xds::Delta delta);

  // For the control socket and /config_dump.
  nlohmann::json status() const;
  nlohmann::json workloads() const;
  nlohmann::json services() const;
  nlohmann::json policies() const;
  nlohmann::json certificates() const;
  const std::string& node() const { return options_.node; }

 private:
  // What the kernel holds for one state.
  struct Kernel {
    std::map<std::string, WorkloadAttachment> enrolled;  // by namespace/name
    SharedMap<IpAddress, DestinationKind> destinations;  // tens of thousands in a large cluster
    std::vector<DenyRule> deny;
  };
  // The config file or the runtime layer: as given (to save, to name in errors) and by key.
  struct Source {
    explicit Source(MeshConfig c);
    MeshConfig config;
    std::map<std::string, std::shared_ptr<const WorkloadConfig>> workloads;  // namespace/name
    std::map<std::string, std::shared_ptr<const ServiceConfig>> services;    // service_key
    std::map<std::string, std::shared_ptr<const AuthorizationPolicy>> policies;
  };
  // istiod's resources by resource name, cheap to copy: a change copies the layer, edits it,
  // and keeps it only if the change is applied.
  struct XdsLayer {
    SharedMap<std::string, std::shared_ptr<const WorkloadConfig>> workloads;      // by uid
    SharedMap<std::string, std::shared_ptr<const ServiceConfig>> services;        // by namespace/hostname
    SharedMap<std::string, std::shared_ptr<const AuthorizationPolicy>> policies;  // by namespace/name
    SharedMap<std::string, std::vector<std::string>> uids;  // namespace/name -> uids; the greatest is the one used
  };
  // The keys a change may have changed the effective entry of: only these are looked at again.
  struct Touched {
    std::set<std::string> workloads, services, policies;  // namespace/name, service_key, namespace/name
  };
  static Touched keys_of(const Source& a, const Source& b);
  // The next state: `current` (none at start-up) with the touched keys taken again from the
  // layers, checked, and what the kernel must then hold. Throws ConfigError; nothing changes.
  struct Next {
    std::shared_ptr<const MeshSnapshot> snapshot;
    Kernel kernel;
  };
  static Next next_state(const MeshSnapshot* current, const Kernel& kernel, const Source& file, const XdsLayer& xds,
                         const Source& runtime, const Touched& touched, const ControllerOptions& options);
  void apply(std::shared_ptr<const Source> file, XdsLayer xds, std::shared_ptr<const Source> runtime,
             const Touched& touched, const std::string& cause);
  void reconcile(const Kernel& from, const Kernel& to);
  void save_runtime(const MeshConfig& runtime) const;
  template <typename T>
  void put_runtime(std::vector<T> MeshConfig::*list, const T& item, const std::string& cause);
  template <typename T>
  void remove_runtime(std::vector<T> MeshConfig::*list, const std::string& key, const char* what,
                      const std::string& cause);
  void set_runtime(MeshConfig runtime, const std::string& cause);
  static bool cgroup_gone(const WorkloadConfig& w, const std::string& node);
  std::string source_of(const WorkloadConfig& w) const;
  std::string source_of_policy(const std::string& key) const;

  ControllerOptions options_;
  Datapath& datapath_;
  MeshState& state_;
  Certificates* certificates_;
  Proxy* proxy_ = nullptr;
  std::function<nlohmann::json()> xds_status_;
  std::shared_ptr<const Source> file_, runtime_;
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
