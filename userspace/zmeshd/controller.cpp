// The control path (see controller.h).
#include "zmesh/json.h"
#include "controller.h"

#include <netinet/in.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sys/stat.h>
#include <set>
#include <sstream>

#include "zmesh/address.h"

namespace zmesh {
namespace {

using nlohmann::json;

// Paths compared as the kernel sees them: "/a/pod1/" and "/a//pod1" are one cgroup.
WorkloadAttachment attachment(const WorkloadConfig& w) {
  std::vector<IpAddress> ips;
  for (const auto& ip : w.ips) ips.push_back(unmapped(ip));
  std::error_code ec;
  auto cgroup = std::filesystem::weakly_canonical(w.cgroup, ec);
  if (ec) cgroup = std::filesystem::path(w.cgroup).lexically_normal();
  return {key_of(w), cgroup, w.host_veth, ips, w.mtls_strict};
}

bool same(const WorkloadAttachment& a, const WorkloadAttachment& b) {
  return a.cgroup == b.cgroup && a.host_veth == b.host_veth && a.ips == b.ips && a.mtls_strict == b.mtls_strict;
}

std::string timestamp(std::chrono::system_clock::time_point t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return out;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path.string() + ": cannot read: " + std::strerror(errno));
  std::error_code ec;
  if (const auto size = std::filesystem::file_size(path, ec); !ec && size > Controller::kMaxFileBytes)
    throw ConfigError(path.string() + ": " + std::to_string(size) + " bytes, more than the " +
                      std::to_string(Controller::kMaxFileBytes >> 20) + " MiB a config file may have");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}



// Replaces the entry with the same namespace/name, else appends.
template <typename T>
void put(std::vector<T>& list, const T& item) {
  auto it = std::find_if(list.begin(), list.end(), [&](const T& x) { return key_of(x) == key_of(item); });
  if (it != list.end()) *it = item;
  else list.push_back(item);
}

template <typename T>
bool contains_key(const std::vector<T>& list, const std::string& key) {
  return std::any_of(list.begin(), list.end(), [&](const T& x) { return key_of(x) == key; });
}

// A pod the CNI plugin enrolled for an identity from xDS, with its Workload when that has come
// with the pod's own addresses: a Workload of a pod since deleted, or of another pod that had
// the name, is no identity for this one.
std::shared_ptr<const WorkloadConfig> paired(const std::shared_ptr<const WorkloadConfig>& pod,
                                             const std::shared_ptr<const WorkloadConfig>& from_xds) {
  if (pod->origin != WorkloadConfig::Origin::AwaitingXds || !from_xds) return pod;
  auto addresses = [](const std::vector<IpAddress>& ips) {
    std::set<IpAddress> out;
    for (const auto& ip : ips) out.insert(unmapped(ip));
    return out;
  };
  if (addresses(from_xds->ips) != addresses(pod->ips)) return pod;
  auto w = std::make_shared<WorkloadConfig>(*from_xds);
  w->node = pod->node;
  w->cgroup = pod->cgroup;
  w->host_veth = pod->host_veth;
  return w;
}

template <typename Map>
auto find_in(const Map& map, const std::string& key) -> typename Map::mapped_type {
  auto it = map.find(key);
  return it == map.end() ? nullptr : it->second;
}

}  // namespace

Controller::Source::Source(MeshConfig c) : config(std::move(c)) {
  // Later entries of one key win, as they always have.
  for (const auto& w : config.workloads) workloads[key_of(w)] = std::make_shared<const WorkloadConfig>(w);
  for (const auto& s : config.services) services[service_key(s)] = std::make_shared<const ServiceConfig>(s);
  for (const auto& p : config.policies) policies[key_of(p)] = std::make_shared<const AuthorizationPolicy>(p);
}

Controller::Touched Controller::keys_of(const Source& a, const Source& b) {
  Touched t;
  for (const Source* source : {&a, &b}) {
    for (const auto& [key, w] : source->workloads) t.workloads.insert(key);
    for (const auto& [key, s] : source->services) t.services.insert(key);
    for (const auto& [key, p] : source->policies) t.policies.insert(key);
  }
  return t;
}

Controller::Controller(ControllerOptions options, Datapath& datapath, MeshState& state, Certificates* certificates)
    : options_(std::move(options)),
      datapath_(datapath),
      state_(state),
      certificates_(certificates),
      file_(std::make_shared<const Source>(MeshConfig{})),
      runtime_(std::make_shared<const Source>(MeshConfig{})) {}

Controller::Initial Controller::load(const ControllerOptions& options) {
  Initial initial;
  if (!options.config_path.empty()) {
    initial.file_text = read_file(options.config_path);
    try {
      initial.file = parse_config(initial.file_text);
    } catch (const ConfigError& e) {
      throw ConfigError(options.config_path.string() + ": " + e.what());
    }
  }
  if (!options.runtime_path.empty() && std::filesystem::exists(options.runtime_path)) {
    initial.runtime = load_config(options.runtime_path);
    if (!initial.runtime.services.empty())
      throw ConfigError(options.runtime_path.string() + ": services: the runtime layer holds only workloads and policies");
    spdlog::info("controller: runtime layer {}: {} workloads, {} policies", options.runtime_path.string(),
                 initial.runtime.workloads.size(), initial.runtime.policies.size());
    // Pods deleted while no zmeshd ran (their DEL found nobody): their cgroup is gone.
    const size_t before = initial.runtime.workloads.size();
    std::erase_if(initial.runtime.workloads, [&](const WorkloadConfig& w) {
      const bool gone = cgroup_gone(w, options.node);
      if (gone) spdlog::info("controller: {} left while zmeshd was down (cgroup {} is gone): dropped", key_of(w), w.cgroup);
      return gone;
    });
    initial.runtime_pruned = initial.runtime.workloads.size() != before;
  }
  // What apply() will check, checked now, before anything on the node changes; and the
  // cgroups of this node's pods, which enrolling them would find missing.
  const Source file(initial.file), runtime(initial.runtime);
  const Next next = next_state(nullptr, {}, file, {}, runtime, keys_of(file, runtime), options);
  for (const auto& [key, attachment] : next.kernel.enrolled)
    if (std::error_code ec; !std::filesystem::is_directory(attachment.cgroup, ec))
      throw ConfigError("workload " + key + ": cgroup " + attachment.cgroup.string() + " does not exist" +
                        (ec ? " (" + ec.message() + ")" : std::string()));
  return initial;
}

void Controller::start(Initial initial) {
  file_text_ = std::move(initial.file_text);
  if (!options_.config_path.empty()) file_stamp_ = stamp_of(options_.config_path);
  if (initial.runtime_pruned) runtime_saved_ = false;
  auto file = std::make_shared<const Source>(std::move(initial.file));
  auto runtime = std::make_shared<const Source>(std::move(initial.runtime));
  const Touched touched = keys_of(*file, *runtime);
  apply(std::move(file), {}, std::move(runtime), touched, "start-up");
}

Controller::FileStamp Controller::stamp_of(const std::filesystem::path& path) {
  struct stat st{};
  if (stat(path.c_str(), &st) != 0) return {};
  return {st.st_ino, static_cast<uintmax_t>(st.st_size), int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
}

bool Controller::cgroup_gone(const WorkloadConfig& w, const std::string& node) {
  std::error_code ec;  // only "does not exist" counts: an unreadable path is not a gone pod
  return w.node == node && !w.cgroup.empty() && !std::filesystem::exists(w.cgroup, ec) && !ec;
}

size_t Controller::drop_vanished_pods() {
  MeshConfig runtime = runtime_->config;
  std::string names;
  std::erase_if(runtime.workloads, [&](const WorkloadConfig& w) {
    const bool gone = cgroup_gone(w, options_.node);
    if (gone) names += (names.empty() ? "" : ", ") + key_of(w);
    return gone;
  });
  const size_t dropped = runtime_->config.workloads.size() - runtime.workloads.size();
  if (dropped) set_runtime(std::move(runtime), "pods gone without a DEL (cgroup removed): " + names);
  return dropped;
}

bool Controller::reload_file(bool force) {
  if (options_.config_path.empty()) {
    if (force) throw ConfigError("zmeshd runs without --config: there is no file to reload");
    return false;
  }
  const std::string cause = force ? "reload (SIGHUP or zmeshctl reload)" : "config file changed";
  ++file_checks_;
  try {
    const FileStamp stamp = stamp_of(options_.config_path);
    if (!force && stamp == file_stamp_) return false;  // a neighbour in its directory changed
    std::string text = read_file(options_.config_path);
    file_stamp_ = stamp;
    if (!force && text == file_text_) return false;  // the same text: applied, or refused, already
    file_text_ = text;
    MeshConfig file;
    try {
      file = parse_config(text);
    } catch (const ConfigError& e) {
      throw ConfigError(options_.config_path.string() + ": " + e.what());
    }
    auto next = std::make_shared<const Source>(std::move(file));
    const Touched touched = keys_of(*file_, *next);
    apply(std::move(next), xds_, runtime_, touched, cause);
    return true;
  } catch (const std::exception& e) {
    last_failure_ = {cause, printable(e.what()), std::chrono::system_clock::now()};
    ++rejected_;
    spdlog::error("controller: {} rejected, generation {} stays in force: {}", cause, generation_, e.what());
    throw;
  }
}

// Adds or replaces one runtime entry (workloads or policies, picked by `list`).
template <typename T>
void Controller::put_runtime(std::vector<T> MeshConfig::*list, const T& item, const std::string& cause) {
  MeshConfig runtime = runtime_->config;
  put(runtime.*list, item);
  set_runtime(std::move(runtime), cause + " " + key_of(item));
}

void Controller::set_runtime(MeshConfig runtime, const std::string& cause) {
  auto next = std::make_shared<const Source>(std::move(runtime));
  const Touched touched = keys_of(*runtime_, *next);
  apply(file_, xds_, std::move(next), touched, cause);
}

// Removes one runtime entry; an entry of the file, or none, is refused with what to do instead.
template <typename T>
void Controller::remove_runtime(std::vector<T> MeshConfig::*list, const std::string& key, const char* what,
                                const std::string& cause) {
  if (!contains_key(runtime_->config.*list, key)) {
    if (contains_key(file_->config.*list, key))
      throw ConfigError(std::string(what) + " " + key + " comes from the config file " + options_.config_path.string() +
                        ": remove it there (" + cause + " removes only what was added at run time)");
    throw ConfigError(std::string("no ") + what + " " + key + " was added at run time");
  }
  MeshConfig runtime = runtime_->config;
  std::erase_if(runtime.*list, [&](const T& x) { return key_of(x) == key; });
  set_runtime(std::move(runtime), cause + " " + key);
}

void Controller::enroll(const WorkloadConfig& workload) { put_runtime(&MeshConfig::workloads, workload, "enroll"); }
void Controller::unenroll(const std::string& key) {
  remove_runtime(&MeshConfig::workloads, key, "workload", "unenroll");
}
void Controller::apply_policy(const AuthorizationPolicy& policy) {
  put_runtime(&MeshConfig::policies, policy, "policy apply");
}

std::string Controller::apply_xds(xds::Delta delta) {
  XdsLayer next = xds_;  // shares everything: the edits below copy only what they touch
  Touched touched;
  const bool addresses = delta.type_url == xds::kAddressType;
  auto drop_workload = [&](const std::string& uid) {
    const auto* old = next.workloads.find(uid);
    if (!old) return false;
    const std::string key = key_of(**old);
    touched.workloads.insert(key);
    auto uids = *next.uids.find(key);
    std::erase(uids, uid);
    if (uids.empty()) next.uids.erase(key);
    else next.uids.put(key, std::move(uids));
    next.workloads.erase(uid);
    return true;
  };
  for (const auto& name : delta.removed) {  // a name never received removes nothing
    if (!addresses) {
      if (next.policies.erase(name)) touched.policies.insert(name);
    } else if (!drop_workload(name) && next.services.erase(name)) {
      touched.services.insert(name);
    }
  }
  for (auto& resource : delta.updated) {  // moved into the layer: a full snapshot is held once
    const std::string name = xds::resource_key(resource);
    if (auto* w = std::get_if<WorkloadConfig>(&resource)) {
      drop_workload(name);
      auto workload = std::make_shared<WorkloadConfig>(std::move(*w));
      workload->origin = WorkloadConfig::Origin::Xds;
      const std::string key = key_of(*workload);
      const auto* now = next.uids.find(key);
      std::vector<std::string> uids = now ? *now : std::vector<std::string>{};
      uids.insert(std::upper_bound(uids.begin(), uids.end(), name), name);
      next.uids.put(key, std::move(uids));
      next.workloads.put(name, std::move(workload));
      touched.workloads.insert(key);
    } else if (auto* s = std::get_if<ServiceConfig>(&resource)) {
      next.services.put(name, std::make_shared<const ServiceConfig>(std::move(*s)));
      touched.services.insert(name);
    } else {
      next.policies.put(name, std::make_shared<const AuthorizationPolicy>(std::move(std::get<AuthorizationPolicy>(resource))));
      touched.policies.insert(name);
    }
  }
  const std::string cause = "xds " + delta.type_url.substr(delta.type_url.rfind('.') + 1) + ": " +
                            std::to_string(delta.updated.size()) + " updated, " + std::to_string(delta.removed.size()) +
                            " removed";
  try {
    apply(file_, std::move(next), runtime_, touched, cause);
    return "";
  } catch (const std::exception& e) {
    last_failure_ = {cause, printable(e.what()), std::chrono::system_clock::now()};
    ++rejected_;
    spdlog::error("controller: {} refused, generation {} stays in force: {}", cause, generation_, e.what());
    return e.what();
  }
}
void Controller::delete_policy(const std::string& key) {
  remove_runtime(&MeshConfig::policies, key, "policy", "policy delete");
}

namespace {

// The kernel_ entries a workload needs in zm_dests: its addresses outside the cluster's pod
// CIDRs (those are captured by CIDR, zm_dest_cidrs), so that zm_dests holds what a node needs
// at any cluster size — the VIPs and the workloads outside the pod network.
template <typename F>
void for_each_destination(const WorkloadConfig& w, const ControllerOptions& options, F&& f) {
  if (w.protocol != TunnelProtocol::Hbone) return;  // not meshed: its connects stay plain TCP
  for (const auto& ip : w.ips)
    if (std::none_of(options.pod_cidrs.begin(), options.pod_cidrs.end(),
                     [&](const IpBlock& b) { return b.contains(unmapped(ip)); }))
      f(unmapped(ip));
}

const std::vector<IpAddress>& addresses_of(const WorkloadConfig& w) { return w.ips; }
const std::vector<IpAddress>& addresses_of(const ServiceConfig& s) { return s.vips; }

// IPv6 mesh addresses need an IPv6 proxy address, or connect6 would send them to [::].
void check_v6(const std::vector<IpAddress>& ips, const ControllerOptions& options, const char* kind,
              const std::string& key) {
  if (options.has_outbound_ip6) return;
  for (const auto& ip : ips)
    if (ip.is_v6() && !ip.to_v6().is_v4_mapped())
      throw ConfigError(std::string(kind) + " " + key + " has IPv6 address " + ip.to_string() +
                        ": give --outbound-ip6 (the IPv6 address pods reach the proxy on)");
}

}  // namespace

Controller::Next Controller::next_state(const MeshSnapshot* current, const Kernel& kernel, const Source& file,
                                        const XdsLayer& xds, const Source& runtime, const Touched& touched,
                                        const ControllerOptions& options) {
  // The effective entry of a key: the runtime layer's (a CNI pod paired with its Workload),
  // else istiod's, else the file's.
  auto workload_of = [&](const std::string& key) -> std::shared_ptr<const WorkloadConfig> {
    std::shared_ptr<const WorkloadConfig> from_xds;
    if (const auto* uids = xds.uids.find(key)) from_xds = *xds.workloads.find(uids->back());
    if (auto pod = find_in(runtime.workloads, key)) return paired(pod, from_xds);
    return from_xds ? from_xds : find_in(file.workloads, key);
  };
  auto service_of = [&](const std::string& key) -> std::shared_ptr<const ServiceConfig> {
    if (const auto* s = xds.services.find(key)) return *s;
    return find_in(file.services, key);
  };
  auto policy_of = [&](const std::string& key) -> std::shared_ptr<const AuthorizationPolicy> {
    if (auto p = find_in(runtime.policies, key)) return p;
    if (const auto* p = xds.policies.find(key)) return *p;
    return find_in(file.policies, key);
  };

  Mesh mesh = current ? current->mesh : Mesh(options.trust_domain, options.node);
  Authorizer authorizer = current ? current->authorizer : Authorizer();
  // Each touched key: its effective entry put (unless the mesh holds it already), or removed.
  auto take = [&](const std::set<std::string>& keys, auto held, auto effective, auto remove, const char* kind) {
    for (const auto& key : keys) {
      const auto* now = held(key);
      if (auto entry = effective(key)) {
        if (now && (now->shared == entry || *now->shared == *entry)) continue;
        check_v6(addresses_of(*entry), options, kind, key);
        mesh.put(std::move(entry));
      } else {
        (mesh.*remove)(key);
      }
    }
  };
  take(touched.workloads, [&](const std::string& k) { return mesh.workload(k); }, workload_of, &Mesh::remove_workload,
       "workload");
  take(touched.services, [&](const std::string& k) { return mesh.service(k); }, service_of, &Mesh::remove_service,
       "service");
  for (const auto& key : touched.policies) {
    const auto* now = authorizer.find(key);
    if (auto p = policy_of(key)) {
      if (!now || !(*now->policy == *p)) authorizer.put(std::move(p));
    } else {
      authorizer.remove(key);
    }
  }
  mesh.settle();
  auto snapshot = std::make_shared<const MeshSnapshot>(std::move(mesh), std::move(authorizer),
                                                       current ? current->generation + 1 : 1);
  const Mesh* before = current ? &current->mesh : nullptr;
  const Mesh& after = snapshot->mesh;

  // The kernel: what the touched entries had taken away first, then what they have now (an
  // address may move between them; settle() saw that each has one owner).
  Kernel k{kernel.enrolled, kernel.destinations, {}};
  for (const auto& key : touched.workloads)
    if (const Workload* w = before ? before->workload(key) : nullptr)
      for_each_destination(w->config, options, [&](const IpAddress& ip) { k.destinations.erase(ip); });
  for (const auto& key : touched.services)
    if (const Service* s = before ? before->service(key) : nullptr)
      for (const auto& vip : s->config.vips) k.destinations.erase(unmapped(vip));
  for (const auto& key : touched.workloads)
    if (const Workload* w = after.workload(key))
      for_each_destination(w->config, options, [&](const IpAddress& ip) { k.destinations.put(ip, DestinationKind::Workload); });
  for (const auto& key : touched.services)
    if (const Service* s = after.service(key))
      for (const auto& vip : s->config.vips) k.destinations.put(unmapped(vip), DestinationKind::Service);
  if (k.destinations.size() > kKernelDestinationCapacity)
    throw ConfigError(std::to_string(k.destinations.size()) + " mesh addresses (workload IPs and service VIPs) are more "
                      "than zm_dests holds (" + std::to_string(kKernelDestinationCapacity) +
                      "): give --pod-cidr (the cluster's pod CIDRs), whose pods are captured by CIDR and need no entry");

  // This node's pods: the touched ones attached again.
  // All of them first: a pod may take over the cgroup or veth of another touched one (renamed).
  bool here_touched = false;
  for (const auto& key : touched.workloads) {
    const Workload* w = after.workload(key);
    const Workload* was = before ? before->workload(key) : nullptr;
    here_touched |= (w && w->config.node == options.node) || (was && was->config.node == options.node);
    k.enrolled.erase(key);
  }
  for (const auto& key : touched.workloads) {
    const Workload* w = after.workload(key);
    if (!w || w->config.node != options.node || w->config.protocol != TunnelProtocol::Hbone) continue;
    if (w->config.cgroup.empty() && w->config.origin == WorkloadConfig::Origin::Xds) continue;  // the CNI plugin has not enrolled it yet
    if (w->config.cgroup.empty())
      throw ConfigError("workload " + key + " is on node " + options.node +
                        " but has no cgroup: zmesh cannot capture its connections");
    const auto a = attachment(w->config);
    for (const auto& [other, b] : k.enrolled) {
      if (b.cgroup == a.cgroup)
        throw ConfigError("workloads " + other + " and " + key + " share the cgroup " + a.cgroup.string());
      if (!a.host_veth.empty() && b.host_veth == a.host_veth)
        throw ConfigError("workloads " + other + " and " + key + " share the hostVeth " + a.host_veth);
    }
    k.enrolled[key] = a;
  }

  // Kernel deny entries for PERMISSIVE pods only: a STRICT pod's plaintext SYNs are dropped
  // anyway (tc_drop_mtls), and HBONE is the proxy's to decide. They change only with the
  // policies or this node's pods.
  if (!current || !touched.policies.empty() || here_touched) {
    for (const auto& d : snapshot->authorizer.kernel_denies(after)) {
      const Workload* w = after.by_ip(d.destination);
      if (!w || w->config.mtls_strict || w->config.protocol != TunnelProtocol::Hbone) continue;
      k.deny.push_back({d.policy, d.source, d.destination, d.port});
    }
    if (k.deny.size() > kKernelDenyCapacity) {
      spdlog::warn("controller: the DENY policies expand to {} kernel entries, more than the map's {}: none go to the "
                   "kernel, the proxy enforces them all",
                   k.deny.size(), kKernelDenyCapacity);
      k.deny.clear();
    }
  } else {
    k.deny = kernel.deny;
  }
  return {std::move(snapshot), std::move(k)};
}

void Controller::reconcile(const Kernel& from, const Kernel& to) {
  // What `to` still uses must survive the removal of an old attachment that shared it (a pod
  // renamed, an address moved to another workload).
  std::set<IpAddress> ips_kept;
  std::set<std::string> cgroups_kept, veths_kept;
  for (const auto& [key, w] : to.enrolled) {
    ips_kept.insert(w.ips.begin(), w.ips.end());
    cgroups_kept.insert(w.cgroup.string());
    if (!w.host_veth.empty()) veths_kept.insert(w.host_veth);
  }
  auto leftover = [&](const WorkloadAttachment& old) {
    WorkloadAttachment rest{old.name, {}, {}, {}, old.mtls_strict};
    if (!cgroups_kept.contains(old.cgroup.string())) rest.cgroup = old.cgroup;
    if (!old.host_veth.empty() && !veths_kept.contains(old.host_veth)) rest.host_veth = old.host_veth;
    for (const auto& ip : old.ips)
      if (!ips_kept.contains(ip)) rest.ips.push_back(ip);
    return rest;
  };
  // Additions first: a destination is captured, a pod enrolled, before anything goes away.
  std::vector<IpAddress> gone;
  SharedMap<IpAddress, DestinationKind>::diff(
      from.destinations, to.destinations,
      [&](const IpAddress& ip, DestinationKind kind) { datapath_.add_destination(ip, kind); },
      [&](const IpAddress& ip, DestinationKind) { gone.push_back(ip); });
  for (const auto& [key, w] : to.enrolled) {
    auto it = from.enrolled.find(key);
    if (it != from.enrolled.end() && same(it->second, w)) continue;
    datapath_.enroll(w);  // in place when the cgroup is the same
    spdlog::info("controller: enrolled {} ({} IPs, cgroup {})", key, w.ips.size(), w.cgroup.string());
  }
  if (from.deny != to.deny) datapath_.set_deny_rules(to.deny);
  for (const auto& [key, old] : from.enrolled) {
    auto it = to.enrolled.find(key);
    if (it != to.enrolled.end() && same(it->second, old)) continue;
    datapath_.unenroll(leftover(old));
    if (it == to.enrolled.end()) spdlog::info("controller: unenrolled {}", key);
  }
  for (const auto& ip : gone) datapath_.remove_destination(ip);
}

void Controller::apply(std::shared_ptr<const Source> file, XdsLayer xds, std::shared_ptr<const Source> runtime,
                       const Touched& touched, const std::string& cause) {
  const auto began = std::chrono::steady_clock::now();
  // Where the time of a change goes, for `--log-level debug` (and BENCHMARKS.md's scale rows).
  auto lap = [last = began]() mutable {
    const auto now = std::chrono::steady_clock::now();
    return std::chrono::duration_cast<std::chrono::microseconds>(now - std::exchange(last, now)).count();
  };
  const auto current = state_.current();
  Next next = next_state(current.get(), kernel_, *file, xds, *runtime, touched, options_);
  const auto& snapshot = next.snapshot;
  const auto plan_us = lap();
  if (certificates_)
    for (const auto* w : snapshot->mesh.local_workloads()) certificates_->ensure(w->identity);
  try {
    reconcile(kernel_, next.kernel);
  } catch (const std::exception&) {
    // Put back what was there: the old state stays in force as a whole. At start-up there is
    // nothing of ours to put back: what a previous daemon pinned stays (BpfDatapath::enroll
    // undoes its own part), so the pods stay captured while this daemon exits.
    if (generation_ == 0) throw;
    try {
      reconcile(next.kernel, kernel_);
    } catch (const std::exception& again) {
      spdlog::error("controller: restoring generation {} after a failed change also failed: {}", generation_,
                    again.what());
    }
    throw;
  }
  const auto reconcile_us = lap();
  kernel_ = std::move(next.kernel);
  file_ = std::move(file);
  xds_ = std::move(xds);
  const bool runtime_changed = runtime != runtime_ && to_json(runtime->config) != to_json(runtime_->config);
  runtime_ = std::move(runtime);
  generation_ = snapshot->generation;
  state_.publish(snapshot);
  last_change_ = {cause, "", std::chrono::system_clock::now()};
  const auto publish_us = lap();
  const size_t closed = proxy_ ? proxy_->reauthorize() : 0;
  spdlog::debug("controller: generation {}: {} workloads, {} services, {} policies touched; plan {} us, reconcile {} us, "
                "publish {} us, reauthorize {} us",
                generation_, touched.workloads.size(), touched.services.size(), touched.policies.size(), plan_us,
                reconcile_us, publish_us, lap());
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began);
  spdlog::info("controller: generation {} in force ({}) after {} us: {} workloads ({} enrolled here), {} services, "
               "{} policies, {} kernel deny entries{}",
               generation_, cause, took.count(), snapshot->mesh.workload_count(), kernel_.enrolled.size(),
               snapshot->mesh.service_count(), snapshot->authorizer.size(), kernel_.deny.size(),
               closed ? ", " + std::to_string(closed) + " connections now denied were closed" : "");
  if (runtime_changed || !runtime_saved_) {
    runtime_saved_ = false;  // until the file says so: a retry of the same change saves again
    save_runtime(runtime_->config);
    runtime_saved_ = true;
  }
}

void Controller::save_runtime(const MeshConfig& runtime) const {
  if (options_.runtime_path.empty()) return;
  json j = to_json(runtime);
  j.erase("services");
  const auto tmp = options_.runtime_path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << json_text(j, 2) << '\n';
    if (!out.flush())
      throw ConfigError("the change is in force but was not saved to " + tmp + ": " + std::strerror(errno) +
                        " (it will not survive a restart)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, options_.runtime_path, ec);
  if (ec)
    throw ConfigError("the change is in force but was not saved to " + options_.runtime_path.string() + ": " +
                      ec.message() + " (it will not survive a restart)");
}

std::string Controller::source_of(const WorkloadConfig& w) const {
  if (runtime_->workloads.contains(key_of(w))) return w.origin == WorkloadConfig::Origin::Xds ? "xds+cni" : "runtime";
  return w.origin == WorkloadConfig::Origin::Xds ? "xds" : "file";
}
std::string Controller::source_of_policy(const std::string& key) const {
  if (runtime_->policies.contains(key)) return "runtime";
  return xds_.policies.contains(key) ? "xds" : "file";
}

json Controller::status() const {
  const auto snapshot = state_.current();
  auto change = [](const Change& c) -> json {
    if (c.cause.empty()) return nullptr;
    json j = {{"cause", c.cause}, {"at", timestamp(c.at)}};
    if (!c.error.empty()) j["error"] = c.error;
    return j;
  };
  json out = {{"node", options_.node},
          {"trustDomain", options_.trust_domain},
          {"generation", generation_},
          {"configFile", options_.config_path.string()},
          {"runtimeFile", options_.runtime_path.string()},
          {"workloads", snapshot->mesh.workload_count()},
          {"enrolledHere", kernel_.enrolled.size()},
          {"runtimeWorkloads", runtime_->workloads.size()},
          {"services", snapshot->mesh.service_count()},
          {"policies", snapshot->authorizer.size()},
          {"runtimePolicies", runtime_->policies.size()},
          {"xds", {{"workloads", xds_.workloads.size()}, {"services", xds_.services.size()}, {"policies", xds_.policies.size()}}},
          {"kernelDenyEntries", kernel_.deny.size()},
          {"kernelDestinations", kernel_.destinations.size()},
          {"lastChange", change(last_change_)},
          {"lastFailure", change(last_failure_)},
          {"rejectedFiles", rejected_},
          {"fileChecks", file_checks_}};
  if (xds_status_) out["xdsStream"] = xds_status_();
  return out;
}

json Controller::workloads() const {
  const auto snapshot = state_.current();
  json out = json::array();
  for (const Workload* workload : snapshot->mesh.workloads()) {
    const WorkloadConfig& w = workload->config;
    json j = to_json(w);
    const std::string key = key_of(w);
    j["source"] = source_of(w);
    if (w.origin == WorkloadConfig::Origin::AwaitingXds) j["identity"] = nullptr;  // its Workload has not come
    else j["identity"] = SpiffeId{w.trust_domain.empty() ? options_.trust_domain : w.trust_domain, w.namespace_,
                                  w.service_account}.uri();
    j["enrolledHere"] = kernel_.enrolled.contains(key);
    out.push_back(j);
  }
  return out;
}

json Controller::services() const {
  json out = json::array();
  for (const Service* s : state_.current()->mesh.services()) out.push_back(to_json(s->config));
  return out;
}

json Controller::policies() const {
  const auto snapshot = state_.current();
  json out = json::array();
  std::map<uint32_t, size_t> kernel_entries;  // by policy id
  for (const auto& rule : kernel_.deny) ++kernel_entries[rule.id];
  for (const auto* entry : snapshot->authorizer.policies()) {
    const auto& p = *entry->policy;
    json j = to_json(p);
    j["source"] = source_of_policy(key_of(p));
    j["kernelDenyEntries"] = kernel_entries[entry->id];
    j["ruleId"] = entry->id;
    out.push_back(j);
  }
  return out;
}

json Controller::certificates() const {
  json out = json::array();
  if (!certificates_) return out;
  for (const auto& id : certificates_->identities()) {
    const auto& cert = certificates_->certificate(id);
    out.push_back({{"identity", id.uri()},
                   {"serial", cert.serial_hex()},
                   {"notBefore", timestamp(cert.not_before)},
                   {"notAfter", timestamp(cert.not_after)},
                   {"source", certificates_->source_name()}});
  }
  return out;
}

}  // namespace zmesh
