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

// put() for lists with an index of their keys (`at`: namespace/name -> position), so that a
// merge of tens of thousands of entries stays linear.
template <typename T>
void put_indexed(std::vector<T>& list, std::map<std::string, size_t>& at, const T& item) {
  auto [it, added] = at.emplace(key_of(item), list.size());
  if (added) list.push_back(item);
  else list[it->second] = item;
}

// A pod the CNI plugin enrolled for an identity from xDS, with its Workload when that has come
// with the pod's own addresses: a Workload of a pod since deleted, or of another pod that had
// the name, is no identity for this one.
WorkloadConfig paired(const WorkloadConfig& pod, const std::map<std::string, const WorkloadConfig*>& xds_by_name) {
  if (pod.origin != WorkloadConfig::Origin::AwaitingXds) return pod;
  auto it = xds_by_name.find(key_of(pod));
  if (it == xds_by_name.end()) return pod;
  auto addresses = [](const std::vector<IpAddress>& ips) {
    std::set<IpAddress> out;
    for (const auto& ip : ips) out.insert(unmapped(ip));
    return out;
  };
  if (addresses(it->second->ips) != addresses(pod.ips)) return pod;
  WorkloadConfig w = *it->second;
  w.node = pod.node;
  w.cgroup = pod.cgroup;
  w.host_veth = pod.host_veth;
  return w;
}

}  // namespace

// Linear in the entries: a cluster's snapshot holds tens of thousands of workloads.
MeshConfig Controller::merge(const MeshConfig& file, const XdsLayer& xds, const MeshConfig& runtime) {
  MeshConfig out;
  std::map<std::string, size_t> workload_at, policy_at;  // namespace/name -> index in `out`
  std::map<std::string, const WorkloadConfig*> xds_by_name;
  for (const auto& w : file.workloads) put_indexed(out.workloads, workload_at, w);
  for (const auto& [uid, w] : xds.workloads) {
    put_indexed(out.workloads, workload_at, w);
    xds_by_name[key_of(w)] = &w;
  }
  for (const auto& w : runtime.workloads) put_indexed(out.workloads, workload_at, paired(w, xds_by_name));
  for (const auto& s : file.services)
    if (!xds.services.contains(service_key(s))) out.services.push_back(s);
  for (const auto& [key, s] : xds.services) out.services.push_back(s);
  for (const auto& p : file.policies) put_indexed(out.policies, policy_at, p);
  for (const auto& [key, p] : xds.policies) put_indexed(out.policies, policy_at, p);
  for (const auto& p : runtime.policies) put_indexed(out.policies, policy_at, p);
  return out;
}

namespace {

template <typename T>
bool contains_key(const std::vector<T>& list, const std::string& key) {
  return std::any_of(list.begin(), list.end(), [&](const T& x) { return key_of(x) == key; });
}

}  // namespace

Controller::Controller(ControllerOptions options, Datapath& datapath, MeshState& state, Certificates* certificates)
    : options_(std::move(options)), datapath_(datapath), state_(state), certificates_(certificates) {}

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
  const MeshConfig merged = merge(initial.file, {}, initial.runtime);
  check(merged, options);
  for (const auto& [key, attachment] : kernel_for(MeshSnapshot(merged, options.trust_domain, options.node, 1), options).enrolled)
    if (std::error_code ec; !std::filesystem::is_directory(attachment.cgroup, ec))
      throw ConfigError("workload " + key + ": cgroup " + attachment.cgroup.string() + " does not exist" +
                        (ec ? " (" + ec.message() + ")" : std::string()));
  return initial;
}

void Controller::start(Initial initial) {
  file_text_ = std::move(initial.file_text);
  if (!options_.config_path.empty()) file_stamp_ = stamp_of(options_.config_path);
  if (initial.runtime_pruned) runtime_saved_ = false;
  apply(std::move(initial.file), {}, std::move(initial.runtime), "start-up");
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
  MeshConfig runtime = runtime_;
  std::string names;
  std::erase_if(runtime.workloads, [&](const WorkloadConfig& w) {
    const bool gone = cgroup_gone(w, options_.node);
    if (gone) names += (names.empty() ? "" : ", ") + key_of(w);
    return gone;
  });
  const size_t dropped = runtime_.workloads.size() - runtime.workloads.size();
  if (dropped) apply(file_, xds_, std::move(runtime), "pods gone without a DEL (cgroup removed): " + names);
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
    apply(std::move(file), xds_, runtime_, cause);
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
  MeshConfig runtime = runtime_;
  put(runtime.*list, item);
  apply(file_, xds_, std::move(runtime), cause + " " + key_of(item));
}

// Removes one runtime entry; an entry of the file, or none, is refused with what to do instead.
template <typename T>
void Controller::remove_runtime(std::vector<T> MeshConfig::*list, const std::string& key, const char* what,
                                const std::string& cause) {
  if (!contains_key(runtime_.*list, key)) {
    if (contains_key(file_.*list, key))
      throw ConfigError(std::string(what) + " " + key + " comes from the config file " + options_.config_path.string() +
                        ": remove it there (" + cause + " removes only what was added at run time)");
    throw ConfigError(std::string("no ") + what + " " + key + " was added at run time");
  }
  MeshConfig runtime = runtime_;
  std::erase_if(runtime.*list, [&](const T& x) { return key_of(x) == key; });
  apply(file_, xds_, std::move(runtime), cause + " " + key);
}

void Controller::enroll(const WorkloadConfig& workload) { put_runtime(&MeshConfig::workloads, workload, "enroll"); }
void Controller::unenroll(const std::string& key) {
  remove_runtime(&MeshConfig::workloads, key, "workload", "unenroll");
}
void Controller::apply_policy(const AuthorizationPolicy& policy) {
  put_runtime(&MeshConfig::policies, policy, "policy apply");
}

std::string Controller::apply_xds(const xds::Delta& delta) {
  XdsLayer next = xds_;
  const bool addresses = delta.type_url == xds::kAddressType;
  for (const auto& name : delta.removed) {  // a name never received removes nothing
    if (!addresses) next.policies.erase(name);
    else if (!next.workloads.erase(name)) next.services.erase(name);
  }
  for (const auto& resource : delta.updated) {
    const std::string key = xds::resource_key(resource);
    if (const auto* w = std::get_if<WorkloadConfig>(&resource)) {
      next.workloads[key] = *w;
      next.workloads[key].origin = WorkloadConfig::Origin::Xds;
    } else if (const auto* s = std::get_if<ServiceConfig>(&resource)) {
      next.services[key] = *s;
    } else {
      next.policies[key] = std::get<AuthorizationPolicy>(resource);
    }
  }
  const std::string cause = "xds " + delta.type_url.substr(delta.type_url.rfind('.') + 1) + ": " +
                            std::to_string(delta.updated.size()) + " updated, " + std::to_string(delta.removed.size()) +
                            " removed";
  try {
    apply(file_, std::move(next), runtime_, cause);
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

Controller::Kernel Controller::kernel_for(const MeshSnapshot& snapshot, const ControllerOptions& options) {
  Kernel k;
  for (const auto& w : snapshot.config.workloads) {
    if (w.protocol != TunnelProtocol::Hbone) continue;  // not meshed: its connects stay plain TCP
    // A pod inside the cluster's pod CIDRs is captured by its CIDR (zm_dest_cidrs): no entry
    // of its own, so that zm_dests holds what a node needs at any cluster size — the VIPs and
    // the workloads outside the pod network.
    for (const auto& ip : w.ips)
      if (std::none_of(options.pod_cidrs.begin(), options.pod_cidrs.end(),
                       [&](const IpBlock& b) { return b.contains(unmapped(ip)); }))
        k.destinations[unmapped(ip)] = DestinationKind::Workload;
    if (w.node != options.node) continue;
    if (w.cgroup.empty() && w.origin == WorkloadConfig::Origin::Xds) continue;  // the CNI plugin has not enrolled it yet
    if (w.cgroup.empty())
      throw ConfigError("workload " + key_of(w) + " is on node " + options.node +
                        " but has no cgroup: zmesh cannot capture its connections");
    const auto a = attachment(w);
    for (const auto& [other, b] : k.enrolled) {
      if (b.cgroup == a.cgroup)
        throw ConfigError("workloads " + other + " and " + key_of(w) + " share the cgroup " + a.cgroup.string());
      if (!a.host_veth.empty() && b.host_veth == a.host_veth)
        throw ConfigError("workloads " + other + " and " + key_of(w) + " share the hostVeth " + a.host_veth);
    }
    k.enrolled[key_of(w)] = a;
  }
  for (const auto& s : snapshot.config.services)
    for (const auto& vip : s.vips) k.destinations[unmapped(vip)] = DestinationKind::Service;
  if (k.destinations.size() > kKernelDestinationCapacity)
    throw ConfigError(std::to_string(k.destinations.size()) + " mesh addresses (workload IPs and service VIPs) are more "
                      "than zm_dests holds (" + std::to_string(kKernelDestinationCapacity) +
                      "): give --pod-cidr (the cluster's pod CIDRs), whose pods are captured by CIDR and need no entry");
  // Kernel deny entries for PERMISSIVE pods only: a STRICT pod's plaintext SYNs are dropped
  // anyway (tc_drop_mtls), and HBONE is the proxy's to decide.
  for (const auto& d : snapshot.authorizer.kernel_denies(snapshot.mesh)) {
    const Workload* w = snapshot.mesh.by_ip(d.destination);
    if (!w || w->config.mtls_strict || w->config.protocol != TunnelProtocol::Hbone) continue;
    k.deny.push_back({static_cast<uint32_t>(d.policy + 1), d.source, d.destination, d.port});
  }
  if (k.deny.size() > kKernelDenyCapacity) {
    spdlog::warn("controller: the DENY policies expand to {} kernel entries, more than the map's {}: none go to the "
                 "kernel, the proxy enforces them all",
                 k.deny.size(), kKernelDenyCapacity);
    k.deny.clear();
  }
  return k;
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
  for (const auto& [ip, kind] : to.destinations) {
    auto it = from.destinations.find(ip);
    if (it == from.destinations.end() || it->second != kind) datapath_.add_destination(ip, kind);
  }
  for (const auto& [key, w] : to.enrolled) {
    auto it = from.enrolled.find(key);
    if (it != from.enrolled.end() && same(it->second, w)) continue;
    datapath_.enroll(w);  // in place when the cgroup is the same
    spdlog::info("controller: enrolled {} ({} IPs, cgroup {})", key, w.ips.size(), w.cgroup.string());
  }
  datapath_.set_deny_rules(to.deny);
  for (const auto& [key, old] : from.enrolled) {
    auto it = to.enrolled.find(key);
    if (it != to.enrolled.end() && same(it->second, old)) continue;
    datapath_.unenroll(leftover(old));
    if (it == to.enrolled.end()) spdlog::info("controller: unenrolled {}", key);
  }
  for (const auto& [ip, kind] : from.destinations)
    if (!to.destinations.contains(ip)) datapath_.remove_destination(ip);
}

// What no kernel state can be built from.
void Controller::check(const MeshConfig& config, const ControllerOptions& options) {
  if (options.has_outbound_ip6) return;
  // IPv6 mesh addresses need an IPv6 proxy address, or connect6 would send them to [::].
  auto v6 = [](const IpAddress& ip) { return ip.is_v6() && !ip.to_v6().is_v4_mapped(); };
  for (const auto& w : config.workloads)
    for (const auto& ip : w.ips)
      if (v6(ip))
        throw ConfigError("workload " + key_of(w) + " has IPv6 address " + ip.to_string() +
                          ": give --outbound-ip6 (the IPv6 address pods reach the proxy on)");
  for (const auto& s : config.services)
    for (const auto& ip : s.vips)
      if (v6(ip)) throw ConfigError("service " + key_of(s) + " has IPv6 VIP " + ip.to_string() + ": give --outbound-ip6");
}

void Controller::apply(MeshConfig file, XdsLayer xds, MeshConfig runtime, const std::string& cause) {
  const auto began = std::chrono::steady_clock::now();
  // Where the time of a change goes, for `--log-level debug` (and BENCHMARKS.md's scale rows).
  auto lap = [last = began]() mutable {
    const auto now = std::chrono::steady_clock::now();
    return std::chrono::duration_cast<std::chrono::microseconds>(now - std::exchange(last, now)).count();
  };
  MeshConfig config = merge(file, xds, runtime);
  check(config, options_);
  const auto merged_us = lap();
  auto snapshot = std::make_shared<const MeshSnapshot>(std::move(config), options_.trust_domain, options_.node,
                                                       generation_ + 1);
  const auto snapshot_us = lap();
  Kernel want = kernel_for(*snapshot, options_);
  const auto kernel_us = lap();
  if (certificates_)
    for (const auto* w : snapshot->mesh.local_workloads()) certificates_->ensure(w->identity);
  try {
    reconcile(kernel_, want);
  } catch (const std::exception&) {
    // Put back what was there: the old state stays in force as a whole. At start-up there is
    // nothing of ours to put back: what a previous daemon pinned stays (BpfDatapath::enroll
    // undoes its own part), so the pods stay captured while this daemon exits.
    if (generation_ == 0) throw;
    try {
      reconcile(want, kernel_);
    } catch (const std::exception& again) {
      spdlog::error("controller: restoring generation {} after a failed change also failed: {}", generation_,
                    again.what());
    }
    throw;
  }
  const auto reconcile_us = lap();
  kernel_ = std::move(want);
  file_ = std::move(file);
  xds_ = std::move(xds);
  const bool runtime_changed = to_json(runtime) != to_json(runtime_);
  runtime_ = std::move(runtime);
  generation_ = snapshot->generation;
  state_.publish(snapshot);
  last_change_ = {cause, "", std::chrono::system_clock::now()};
  const auto publish_us = lap();
  const size_t closed = proxy_ ? proxy_->reauthorize() : 0;
  spdlog::debug("controller: generation {}: merge {} us, snapshot {} us, kernel plan {} us, reconcile {} us, "
                "publish {} us, reauthorize {} us",
                generation_, merged_us, snapshot_us, kernel_us, reconcile_us, publish_us, lap());
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began);
  spdlog::info("controller: generation {} in force ({}) after {} us: {} workloads ({} enrolled here), {} services, "
               "{} policies, {} kernel deny entries{}",
               generation_, cause, took.count(), snapshot->config.workloads.size(), kernel_.enrolled.size(),
               snapshot->config.services.size(), snapshot->config.policies.size(), kernel_.deny.size(),
               closed ? ", " + std::to_string(closed) + " connections now denied were closed" : "");
  if (runtime_changed || !runtime_saved_) {
    runtime_saved_ = false;  // until the file says so: a retry of the same change saves again
    save_runtime(runtime_);
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
  if (contains_key(runtime_.workloads, key_of(w))) return w.origin == WorkloadConfig::Origin::Xds ? "xds+cni" : "runtime";
  return w.origin == WorkloadConfig::Origin::Xds ? "xds" : "file";
}
std::string Controller::source_of_policy(const std::string& key) const {
  if (contains_key(runtime_.policies, key)) return "runtime";
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
          {"workloads", snapshot->config.workloads.size()},
          {"enrolledHere", kernel_.enrolled.size()},
          {"runtimeWorkloads", runtime_.workloads.size()},
          {"services", snapshot->config.services.size()},
          {"policies", snapshot->config.policies.size()},
          {"runtimePolicies", runtime_.policies.size()},
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
  for (const auto& w : snapshot->config.workloads) {
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
  for (const auto& s : state_.current()->config.services) out.push_back(to_json(s));
  return out;
}

json Controller::policies() const {
  const auto snapshot = state_.current();
  json out = json::array();
  for (size_t i = 0; i < snapshot->config.policies.size(); ++i) {
    const auto& p = snapshot->config.policies[i];
    json j = to_json(p);
    j["source"] = source_of_policy(key_of(p));
    j["kernelDenyEntries"] =
        std::count_if(kernel_.deny.begin(), kernel_.deny.end(), [&](const DenyRule& r) { return r.id == i + 1; });
    j["ruleId"] = i + 1;
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
