// BpfDatapath and PinnedMaps (see include/zmesh/datapath.h).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

// The skeletons name the shared structs; they need their definitions first.
#include "zmesh_maps.h"
// clang-format off
#include "connect.skel.h"
#include "sockops.skel.h"
#include "tc_egress.skel.h"
#include "tc_ingress.skel.h"
// clang-format on
#include "fd.h"
#include "keys.h"
#include "layout.h"
#include "libbpf_log.h"
#include "netlink.h"
#include "zmesh/datapath.h"
#include "zmesh/datapath_error.h"
#include "zmesh/kernel.h"

namespace zmesh {
namespace fs = std::filesystem;
using datapath::UniqueFd;

namespace {

constexpr auto kTcxIngress = static_cast<bpf_attach_type>(46);  // BPF_TCX_INGRESS; libbpf 1.1 predates it
constexpr auto kTcxEgress = static_cast<bpf_attach_type>(47);   // BPF_TCX_EGRESS
constexpr uint32_t kTcHandle = 0x5a0;                           // our clsact filter: handle and priority
constexpr uint32_t kTcPriority = 1;

// The two tc hooks: ingress on every interface, egress (the door) on enrolled pods' veths.
enum class TcDirection { Ingress, Egress };
struct TcHook {
  const char* prefix;  // of the link's pin name: "<prefix><ifindex>_<ifname>"
  bpf_attach_type tcx;
  bpf_tc_attach_point clsact;
};
constexpr TcHook kTcHooks[] = {{"tc_", kTcxIngress, BPF_TC_INGRESS}, {"tce_", kTcxEgress, BPF_TC_EGRESS}};
const TcHook& hook_of(TcDirection d) { return kTcHooks[static_cast<int>(d)]; }

// Each skeleton type's generated functions, so that one template loads them all.
template <typename S>
struct Skeleton;
#define ZM_SKELETON(name)                                                                         \
  template <>                                                                                     \
  struct Skeleton<name##_bpf> {                                                                   \
    static constexpr const char* kName = #name;                                                   \
    static name##_bpf* open(const bpf_object_open_opts* opts) { return name##_bpf__open_opts(opts); } \
    static int load(name##_bpf* skel) { return name##_bpf__load(skel); }                          \
    static void destroy(name##_bpf* skel) { name##_bpf__destroy(skel); }                          \
  };
ZM_SKELETON(connect)
ZM_SKELETON(sockops)
ZM_SKELETON(tc_ingress)
ZM_SKELETON(tc_egress)

template <typename S>
struct DestroySkeleton {
  void operator()(S* skel) const { Skeleton<S>::destroy(skel); }
};
template <typename S>
using SkeletonPtr = std::unique_ptr<S, DestroySkeleton<S>>;

// Opens and loads one object, its maps pinned under `pin_root` (reusing pins of the same
// layout; those of another layout are set aside first, and reported in `changed`).
template <typename S>
SkeletonPtr<S> load_skeleton(const fs::path& pin_root, const zm_config& config,
                             std::vector<datapath::LayoutChange>& changed) {
  const std::string root = pin_root.string();
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = root.c_str());
  SkeletonPtr<S> skel(Skeleton<S>::open(&opts));
  if (!skel) throw DatapathError(std::string("open BPF object ") + Skeleton<S>::kName, errno);
  std::memcpy(const_cast<void*>(static_cast<const volatile void*>(&skel->rodata->zm_cfg)), &config, sizeof config);
  for (auto& change : datapath::set_aside_changed_maps(skel->obj, pin_root)) changed.push_back(std::move(change));
  if (int err = Skeleton<S>::load(skel.get()))
    throw DatapathError(std::string("load BPF object ") + Skeleton<S>::kName + " (maps pinned under " + root + ")",
                        -err);
  return skel;
}

struct DestroyLink {
  void operator()(bpf_link* link) const { bpf_link__destroy(link); }
};
using LinkPtr = std::unique_ptr<bpf_link, DestroyLink>;

// Detaches a link from its hook for good (not just closing our fd) and removes its pin.
void detach_and_unpin(bpf_link* link, const fs::path& pin) {
  bpf_link__detach(link);
  std::error_code ec;
  fs::remove(pin, ec);
}

bool on_filesystem(const fs::path& path, long magic) {
  struct statfs st{};
  return statfs(path.c_str(), &st) == 0 && st.f_type == magic;
}

// Creates the pin root (and links/) after checking it lies on bpffs.
void make_pin_root(const fs::path& root) {
  fs::path existing = root;
  while (!existing.empty() && !fs::exists(existing)) existing = existing.parent_path();
  if (!on_filesystem(existing, BPF_FS_MAGIC))
    throw DatapathError("pin root " + root.string() + " is not on bpffs (" + existing.string() +
                            " is not): mount -t bpf bpf /sys/fs/bpf",
                        ENOTSUP);
  std::error_code ec;
  fs::create_directories(root / "links", ec);
  if (ec) throw DatapathError("create pin root " + root.string(), ec.value());
}

// This process's cgroup v2 directory, from /proc/self/cgroup ("0::/path").
fs::path own_cgroup() {
  const auto mount = find_mount("cgroup2");
  if (!mount) throw DatapathError("find this process's cgroup: cgroup v2 is not mounted", ENOENT);
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) return *mount / fs::path(line.substr(3)).relative_path();
  throw DatapathError("find this process's cgroup: no cgroup v2 line in /proc/self/cgroup", ENOENT);
}

struct Cgroup {
  UniqueFd fd;
  uint64_t id = 0;
};

Cgroup open_cgroup(const fs::path& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw DatapathError("open cgroup " + path.string(), errno);
  if (!on_filesystem(path, CGROUP2_SUPER_MAGIC)) {
    const auto mount = find_mount("cgroup2");
    throw DatapathError("cgroup " + path.string() + " is not a cgroup v2 directory (cgroup v2 is " +
                            (mount ? "mounted at " + mount->string() : std::string("not mounted")) + ")",
                        EINVAL);
  }
  struct stat st{};
  fstat(fd.get(), &st);
  return {std::move(fd), st.st_ino};
}

unsigned interface_index(const std::string& name) {
  unsigned index = if_nametoindex(name.c_str());
  if (index == 0) throw DatapathError("find interface " + name + " in this netns", errno ? errno : ENODEV);
  return index;
}

// The name of a tc link: "tc_<ifindex>_<ifname>". The index keeps a link of a vanished
// interface apart from one of a new interface that took its name.
std::string tc_link_name(TcDirection direction, unsigned ifindex, const std::string& ifname) {
  return hook_of(direction).prefix + std::to_string(ifindex) + "_" + ifname;
}

// Whether a tc link's interface is still the one it was made for.
bool tc_link_current(const std::string& name) {
  for (const auto& hook : kTcHooks) {
    const std::string prefix = hook.prefix;
    if (name.rfind(prefix, 0) != 0) continue;
    const auto underscore = name.find('_', prefix.size());
    if (underscore == std::string::npos) return false;
    char ifname[IF_NAMESIZE] = {};
    const unsigned ifindex = static_cast<unsigned>(std::strtoul(name.c_str() + prefix.size(), nullptr, 10));
    return if_indextoname(ifindex, ifname) && name.substr(underscore + 1) == ifname;
  }
  return true;  // not a tc link
}

// The network namespace's cookie (SO_NETNS_COOKIE), as bpf_get_netns_cookie() sees it.
uint64_t netns_cookie() {
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  constexpr int kSoNetnsCookie = 71;  // SO_NETNS_COOKIE (Linux 5.14); glibc 2.36 lacks the name
  if (!fd || getsockopt(fd.get(), SOL_SOCKET, kSoNetnsCookie, &cookie, &len) != 0)
    throw DatapathError("read this network namespace's cookie (SO_NETNS_COOKIE, Linux >= 5.14)", errno);
  return cookie;
}

// How deep a cgroup lies below the cgroup v2 root (the root is 0), for the programs'
// ancestor-id lookups.
uint32_t cgroup_level(const fs::path& cgroup) {
  const auto mount = find_mount("cgroup2");
  if (!mount) throw DatapathError("cgroup v2 is not mounted", ENOENT);
  const fs::path relative = fs::weakly_canonical(cgroup).lexically_relative(fs::weakly_canonical(*mount));
  if (relative.empty() || *relative.begin() == "..")
    throw DatapathError("cgroup " + cgroup.string() + " is not below the cgroup v2 mount " + mount->string(), EINVAL);
  uint32_t level = 0;
  for (const auto& part : relative)
    if (part != ".") ++level;
  return level;
}

std::string bytes_of(const void* data, size_t size) { return {static_cast<const char*>(data), size}; }

// Keys of a map, as raw bytes.
std::vector<std::string> map_keys(int fd, size_t key_size) {
  std::vector<std::string> keys;
  std::string key(key_size, '\0'), next(key_size, '\0');
  const void* cursor = nullptr;
  while (bpf_map_get_next_key(fd, cursor, next.data()) == 0) {
    keys.push_back(next);
    key = next;
    cursor = key.data();
  }
  return keys;
}

UniqueFd open_pinned_map(const fs::path& root, const char* name) {
  const fs::path path = root / name;
  UniqueFd fd(bpf_obj_get(path.c_str()));
  if (!fd) throw DatapathError("open pinned map " + path.string() + " (is zmeshd running with this pin root?)", errno);
  return fd;
}

// A map's capacity as the kernel has it (the programs' max_entries; one place, bpf/lib/maps.h).
uint32_t capacity_of(int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof info;
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.max_entries : 0;
}

void update(int fd, const void* key, const void* value, const char* map, const std::string& what) {
  if (bpf_map_update_elem(fd, key, value, BPF_ANY) == 0) return;
  const int err = errno;
  if (err == E2BIG || err == ENOSPC || err == ENOMEM)
    throw DatapathError(what + ": map " + map + " is full (" + std::to_string(capacity_of(fd)) + " entries)", err);
  throw DatapathError(what + " in map " + map, err);
}

}  // namespace

#define ZM_COUNT_ONE(name, help) +1
static_assert(sizeof(DatapathCounters) == (0 ZM_COUNTERS(ZM_COUNT_ONE)) * sizeof(uint64_t),
              "every field of struct zm_counters comes from ZM_COUNTERS, so each has a name in /metrics");
#undef ZM_COUNT_ONE

const std::vector<CounterInfo> kCounters = {
#define ZM_COUNTER_INFO(name, help) {#name, help, &DatapathCounters::name},
    ZM_COUNTERS(ZM_COUNTER_INFO)
#undef ZM_COUNTER_INFO
};

std::vector<std::pair<const char*, uint64_t>> named_counters(const DatapathCounters& c) {
  std::vector<std::pair<const char*, uint64_t>> out;
  for (const auto& counter : kCounters) out.emplace_back(counter.name, c.*counter.field);
  return out;
}

// ---------------------------------------------------------------------------------------------
// PinnedMaps

struct PinnedMaps::Fds {
  UniqueFd dests, workloads, orig, deny, counters, dest_cidrs;
};

PinnedMaps::PinnedMaps(const fs::path& pin_root) : fds_(std::make_unique<Fds>()) {
  fds_->dests = open_pinned_map(pin_root, "zm_dests");
  fds_->workloads = open_pinned_map(pin_root, "zm_workloads");
  fds_->orig = open_pinned_map(pin_root, "zm_orig");
  fds_->deny = open_pinned_map(pin_root, "zm_l4_deny");
  fds_->counters = open_pinned_map(pin_root, "zm_counters");
  fds_->dest_cidrs = open_pinned_map(pin_root, "zm_dest_cidrs");
}
PinnedMaps::~PinnedMaps() = default;
PinnedMaps::PinnedMaps(PinnedMaps&&) noexcept = default;
PinnedMaps& PinnedMaps::operator=(PinnedMaps&&) noexcept = default;

DatapathCounters PinnedMaps::counters() const {
  static_assert(sizeof(zm_counters) % sizeof(uint64_t) == 0);
  constexpr size_t kFields = sizeof(zm_counters) / sizeof(uint64_t);
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) throw DatapathError("count possible CPUs", -cpus);
  std::vector<uint64_t> per_cpu(kFields * static_cast<size_t>(cpus));
  const uint32_t key = 0;
  if (bpf_map_lookup_elem(fds_->counters.get(), &key, per_cpu.data()) != 0)
    throw DatapathError("read map zm_counters", errno);
  uint64_t sum[kFields] = {};
  for (int cpu = 0; cpu < cpus; ++cpu)
    for (size_t i = 0; i < kFields; ++i) sum[i] += per_cpu[static_cast<size_t>(cpu) * kFields + i];
  DatapathCounters out{};
  std::memcpy(&out, sum, sizeof out);
  return out;
}

std::optional<OriginalDestination> PinnedMaps::take_original_destination(const TcpEndpoint& peer,
                                                                         const TcpEndpoint& local) {
  const zm_tuple key = datapath::pod_tuple(peer, local);
  zm_orig orig{};
  if (bpf_map_lookup_elem(fds_->orig.get(), &key, &orig) != 0) return std::nullopt;
  bpf_map_delete_elem(fds_->orig.get(), &key);
  return OriginalDestination{datapath::endpoint(orig), (orig.flags & ZM_ORIG_FROM_NODE) != 0};
}

std::vector<IpAddress> PinnedMaps::destinations() const {
  std::vector<IpAddress> out;
  for (const auto& [ip, kind] : destination_entries()) out.push_back(ip);
  return out;
}

std::vector<IpAddress> PinnedMaps::workload_ips() const {
  std::vector<IpAddress> out;
  for (const auto& entry : workload_entries()) out.push_back(entry.ip);
  return out;
}

size_t PinnedMaps::deny_rule_count() const { return map_keys(fds_->deny.get(), sizeof(zm_deny_key)).size(); }

// Entries that vanish between listing a key and reading it (a concurrent delete) are skipped.
std::vector<PinnedMaps::WorkloadEntry> PinnedMaps::workload_entries() const {
  std::vector<WorkloadEntry> out;
  for (const auto& raw : map_keys(fds_->workloads.get(), sizeof(zm_ip_key))) {
    auto* key = reinterpret_cast<const zm_ip_key*>(raw.data());
    zm_workload value{};
    if (bpf_map_lookup_elem(fds_->workloads.get(), key, &value) != 0) continue;
    out.push_back({datapath::from_zm_ip(key->addr, key->family), (value.flags & ZM_WL_MTLS_STRICT) != 0,
                   value.ifindex, value.cgroup_id});
  }
  return out;
}

std::vector<std::pair<IpAddress, DestinationKind>> PinnedMaps::destination_entries() const {
  std::vector<std::pair<IpAddress, DestinationKind>> out;
  for (const auto& raw : map_keys(fds_->dests.get(), sizeof(zm_ip_key))) {
    auto* key = reinterpret_cast<const zm_ip_key*>(raw.data());
    zm_dest value{};
    if (bpf_map_lookup_elem(fds_->dests.get(), key, &value) != 0) continue;
    out.emplace_back(datapath::from_zm_ip(key->addr, key->family), static_cast<DestinationKind>(value.kind));
  }
  return out;
}

std::vector<IpBlock> PinnedMaps::destination_cidrs() const {
  std::vector<IpBlock> out;
  for (const auto& raw : map_keys(fds_->dest_cidrs.get(), sizeof(zm_cidr_key))) {
    auto* key = reinterpret_cast<const zm_cidr_key*>(raw.data());
    out.push_back({datapath::from_zm_ip(key->ip.addr, key->ip.family),
                   static_cast<uint8_t>(key->prefixlen - ZM_CIDR_FAMILY_BITS)});
  }
  return out;
}

std::vector<DenyRule> PinnedMaps::deny_rules() const {
  std::vector<DenyRule> out;
  for (const auto& raw : map_keys(fds_->deny.get(), sizeof(zm_deny_key))) {
    auto* key = reinterpret_cast<const zm_deny_key*>(raw.data());
    zm_deny value{};
    if (bpf_map_lookup_elem(fds_->deny.get(), key, &value) != 0) continue;
    out.push_back({value.rule_id,
                   {datapath::from_zm_ip(key->src, key->family), static_cast<uint8_t>(key->prefixlen - ZM_DENY_EXACT_BITS)},
                   datapath::from_zm_ip(key->dst, key->family), ntohs(key->dport)});
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// BpfDatapath

bool DenyRule::operator<(const DenyRule& other) const {
  return std::tie(id, source, destination, port) < std::tie(other.id, other.source, other.destination, other.port);
}

struct BpfDatapath::Impl {
  UniqueFd pin_root_lock;  // held for the daemon's life: one daemon per pin root
  DatapathOptions options;
  TcMode tc_mode = TcMode::Tcx;
  SkeletonPtr<connect_bpf> connect;
  SkeletonPtr<sockops_bpf> sockops;
  SkeletonPtr<tc_ingress_bpf> tc;
  SkeletonPtr<tc_egress_bpf> door;
  PinnedMaps maps;
  std::map<std::string, LinkPtr> links;  // pin name (under links/) -> link
  std::set<std::string> claimed_links, claimed_workloads, claimed_dests;
  // Links a previous daemon pinned, still running its programs until commit_start().
  std::set<std::string> adopted;
  std::vector<datapath::LayoutChange> layout_changes;  // maps set aside at start
  bool committed = false;
  // clsact mode: filters to attach at commit_start(), for replacing one would put this
  // daemon's programs to work before its maps are filled.
  std::set<std::pair<std::string, TcDirection>> clsact_pending;

  fs::path link_pin(const std::string& name) const { return options.pin_root / "links" / name; }

  // The program a pinned link runs, from its name: "tc_<ifindex>_<ifname>", "tce_...",
  // "cg_<cgroup id>_<kind>".
  bpf_program* program_for(const std::string& link_name) const {
    if (link_name.rfind("tce_", 0) == 0) return door->progs.zm_tc_egress;
    if (link_name.rfind("tc_", 0) == 0) return tc->progs.zm_tc_ingress;
    if (link_name.rfind("cg_", 0) != 0) return nullptr;
    const auto underscore = link_name.find('_', 3);
    if (underscore == std::string::npos) return nullptr;
    const std::map<std::string, bpf_program*> kinds = {
        {"connect4", connect->progs.zm_connect4},           {"connect6", connect->progs.zm_connect6},
        {"sockops", sockops->progs.zm_sockops},             {"node_connect4", connect->progs.zm_connect4_node},
        {"node_connect6", connect->progs.zm_connect6_node}, {"node_sockops", sockops->progs.zm_sockops_node}};
    const auto kind = kinds.find(link_name.substr(underscore + 1));
    return kind == kinds.end() ? nullptr : kind->second;
  }

  // Takes over the links a previous daemon pinned. They keep running its programs (and the
  // maps those hold) until commit_start() swaps this daemon's in, once its maps are filled.
  void adopt_links() {
    for (const auto& entry : fs::directory_iterator(options.pin_root / "links")) {
      const std::string name = entry.path().filename();
      LinkPtr link(bpf_link__open(entry.path().c_str()));
      if (!link || !program_for(name) || !tc_link_current(name)) {
        spdlog::warn("datapath: pinned link {} cannot be adopted (its hook is gone?); removing it", name);
        if (link) detach_and_unpin(link.get(), entry.path());
        else fs::remove(entry.path());
        continue;
      }
      spdlog::debug("datapath: adopted pinned link {}", name);
      links.emplace(name, std::move(link));
      adopted.insert(name);
    }
  }

  // This daemon's programs into the adopted links (BPF_LINK_UPDATE: one atomic swap each).
  void update_adopted_links() {
    for (const auto& name : adopted) {
      auto it = links.find(name);
      if (it == links.end()) continue;  // detached since
      if (bpf_link__update_program(it->second.get(), program_for(name)) != 0) {
        spdlog::warn("datapath: pinned link {} cannot take this daemon's program ({}); removing it", name,
                     std::strerror(errno));
        detach_link(name);
      }
    }
    adopted.clear();
  }

  void keep_link(const std::string& name, LinkPtr link) {
    if (int err = bpf_link__pin(link.get(), link_pin(name).c_str())) {
      bpf_link__detach(link.get());
      throw DatapathError("pin link " + link_pin(name).string(), -err);
    }
    links.emplace(name, std::move(link));
  }

  void attach_cgroup(const fs::path& cgroup_path, bpf_program* prog, const std::string& kind) {
    Cgroup cgroup = open_cgroup(cgroup_path);
    const std::string name = "cg_" + std::to_string(cgroup.id) + "_" + kind;
    claimed_links.insert(name);
    if (links.contains(name)) return;
    LinkPtr link(bpf_program__attach_cgroup(prog, cgroup.fd.get()));
    if (!link) throw DatapathError("attach " + kind + " to cgroup " + cgroup_path.string(), errno);
    keep_link(name, std::move(link));
  }

  void attach_tc(const std::string& ifname, TcDirection direction) {
    const unsigned ifindex = interface_index(ifname);
    const TcHook& hook = hook_of(direction);
    const std::string name = tc_link_name(direction, ifindex, ifname);
    const char* what = direction == TcDirection::Ingress ? "tc ingress" : "tc egress (the pod's door)";
    claimed_links.insert(name);
    const int prog_fd = bpf_program__fd(direction == TcDirection::Ingress ? tc->progs.zm_tc_ingress
                                                                          : door->progs.zm_tc_egress);
    if (tc_mode == TcMode::Tcx) {
      if (links.contains(name)) return;
      UniqueFd link_fd(bpf_link_create(prog_fd, static_cast<int>(ifindex), hook.tcx, nullptr));
      if (link_fd) {
        if (bpf_obj_pin(link_fd.get(), link_pin(name).c_str()) != 0)
          throw DatapathError("pin tcx link " + link_pin(name).string(), errno);
        links.emplace(name, LinkPtr(bpf_link__open(link_pin(name).c_str())));
        return;
      }
      if (options.tc_mode == TcMode::Tcx || errno != EINVAL)
        throw DatapathError(std::string("attach ") + what + " (tcx) to " + ifname, errno);
      spdlog::info("datapath: tcx is not available here; using clsact for tc");
      tc_mode = TcMode::Clsact;
    }
    if (!committed) {
      clsact_pending.insert({ifname, direction});
      return;
    }
    LIBBPF_OPTS(bpf_tc_hook, qdisc, .ifindex = static_cast<int>(ifindex), .attach_point = hook.clsact);
    if (int err = bpf_tc_hook_create(&qdisc); err && err != -EEXIST)
      throw DatapathError("create clsact qdisc on " + ifname, -err);
    LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE, .handle = kTcHandle,
                .priority = kTcPriority);
    if (int err = bpf_tc_attach(&qdisc, &opts)) throw DatapathError(std::string("attach ") + what + " (clsact) to " + ifname, -err);
  }

  void detach_link(const std::string& name) {
    claimed_links.erase(name);
    if (auto it = links.find(name); it != links.end()) {
      detach_and_unpin(it->second.get(), link_pin(name));
      links.erase(it);
    }
  }

  // `ifindex` 0: the interface is gone (its links went with it; only our records remain).
  void detach_tc(const std::string& ifname, unsigned ifindex, TcDirection direction) {
    if (ifindex) {
      detach_link(tc_link_name(direction, ifindex, ifname));
      detach_clsact(static_cast<int>(ifindex), hook_of(direction).clsact);
      return;
    }
    std::vector<std::string> gone;
    const std::string prefix = hook_of(direction).prefix, suffix = "_" + ifname;
    for (const auto& [name, link] : links)
      if (name.rfind(prefix, 0) == 0 && name.size() > suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 && !tc_link_current(name))
        gone.push_back(name);
    for (const auto& name : gone) detach_link(name);
  }

  static void detach_clsact(int ifindex, bpf_tc_attach_point point) {
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
    if (bpf_tc_query(&hook, &opts) == 0) {
      LIBBPF_OPTS(bpf_tc_opts, detach, .handle = kTcHandle, .priority = kTcPriority);
      bpf_tc_detach(&hook, &detach);
    }
  }

  // tc ingress on every interface of this netns but lo.
  void hook_all_interfaces() {
    struct if_nameindex* interfaces = if_nameindex();
    if (!interfaces) throw DatapathError("list the interfaces of this netns", errno);
    std::vector<std::string> names;
    for (auto* i = interfaces; i->if_index != 0; ++i)
      if (std::string_view(i->if_name) != "lo") names.emplace_back(i->if_name);
    if_freenameindex(interfaces);
    for (const auto& name : names) {
      try {
        attach_tc(name, TcDirection::Ingress);
      } catch (const DatapathError& e) {
        if (e.error_code() != ENODEV) throw;  // gone since it was listed
      }
    }
  }

  zm_config config() const {
    zm_config c{};
    auto v4 = options.outbound_ip4.to_bytes();
    std::memcpy(&c.outbound_ip4.v4, v4.data(), v4.size());
    if (options.outbound_ip6) {
      auto v6 = options.outbound_ip6->to_bytes();
      std::memcpy(c.outbound_ip6.v6, v6.data(), v6.size());
    }
    c.outbound_port = options.outbound_port;
    c.inbound_hbone_port = options.inbound_hbone_port;
    c.inbound_plain_port = options.inbound_plain_port;
    c.proxy_mark = options.proxy_mark;
    c.assign_mark = options.assign_mark;
    c.sockmap_enabled = options.sockmap ? 1 : 0;
    c.node_netns_cookie = netns_cookie();
    c.proxy_cgroup_id = open_cgroup(proxy_cgroup()).id;
    if (!options.probe_cgroup.empty()) {
      c.probe_cgroup_id = open_cgroup(options.probe_cgroup).id;
      c.probe_cgroup_level = cgroup_level(options.probe_cgroup);
    }
    return c;
  }

  fs::path proxy_cgroup() const { return options.proxy_cgroup.empty() ? own_cgroup() : options.proxy_cgroup; }
  fs::path host_cgroup() const {
    if (!options.host_cgroup.empty()) return options.host_cgroup;
    const auto mount = find_mount("cgroup2");
    if (!mount) throw DatapathError("capture the node's own connects: cgroup v2 is not mounted", ENOENT);
    return *mount;
  }

  datapath::LocalDeliveryRoute route() const {
    return {options.assign_mark, options.route_table, DatapathOptions::kRulePriority};
  }
};

BpfDatapath::BpfDatapath(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BpfDatapath::~BpfDatapath() = default;

std::unique_ptr<BpfDatapath> BpfDatapath::start(const DatapathOptions& options) {
  datapath::route_libbpf_log();
  if (options.outbound_ip4.is_unspecified())
    throw std::invalid_argument("datapath: outbound_ip4 (the proxy address pods connect to) is not set");
  const KernelFacts facts = read_kernel_facts();
  if (!facts.btf) throw DatapathError("load BPF programs: /sys/kernel/btf/vmlinux is missing (kernel without BTF)", ENOTSUP);
  make_pin_root(options.pin_root);

  auto impl = std::make_unique<Impl>();
  // Before anything pinned is touched: a second daemon on this root would adopt the first
  // one's links with its own programs and prune what its config lacks.
  impl->pin_root_lock = UniqueFd(open(options.pin_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!impl->pin_root_lock || flock(impl->pin_root_lock.get(), LOCK_EX | LOCK_NB) != 0)
    throw DatapathError("lock pin root " + options.pin_root.string() +
                            " (another zmeshd is running with this --bpf-root?)",
                        errno);
  impl->options = options;
  impl->tc_mode = options.tc_mode == TcMode::Clsact || (options.tc_mode == TcMode::Auto && !facts.tcx)
                      ? TcMode::Clsact
                      : TcMode::Tcx;
  const zm_config config = impl->config();
  auto& changed = impl->layout_changes;
  impl->connect = load_skeleton<connect_bpf>(options.pin_root, config, changed);
  impl->sockops = load_skeleton<sockops_bpf>(options.pin_root, config, changed);
  impl->tc = load_skeleton<tc_ingress_bpf>(options.pin_root, config, changed);
  impl->door = load_skeleton<tc_egress_bpf>(options.pin_root, config, changed);
  for (const auto& c : changed)
    spdlog::warn("datapath: map {} was pinned with another layout; a new one is filled from the config while the "
                 "running programs keep the old one until this daemon takes over (pinned: {}; this build: {})",
                 c.map, c.pinned, c.declared);
  impl->maps = PinnedMaps(options.pin_root);
  impl->adopt_links();

  if (options.sockmap &&
      bpf_prog_attach(bpf_program__fd(impl->sockops->progs.zm_sk_msg), bpf_map__fd(impl->sockops->maps.zm_sockhash),
                      BPF_SK_MSG_VERDICT, 0) != 0)
    throw DatapathError("attach sk_msg to zm_sockhash", errno);
  impl->attach_cgroup(impl->proxy_cgroup(), impl->sockops->progs.zm_sockops, "sockops");
  if (options.node_capture) {
    const fs::path host = impl->host_cgroup();
    impl->attach_cgroup(host, impl->connect->progs.zm_connect4_node, "node_connect4");
    impl->attach_cgroup(host, impl->connect->progs.zm_connect6_node, "node_connect6");
    impl->attach_cgroup(host, impl->sockops->progs.zm_sockops_node, "node_sockops");
  }
  impl->hook_all_interfaces();
  datapath::add_local_delivery(impl->route());
  spdlog::info("datapath: programs loaded, maps and links pinned under {} (tc via {}, short-cut {}); the node's "
               "own connects {}; kubelet probes from {}",
               options.pin_root.string(), impl->tc_mode == TcMode::Tcx ? "tcx" : "clsact",
               options.sockmap ? "on" : "off",
               options.node_capture ? "captured in " + impl->host_cgroup().string() : std::string("not captured"),
               options.probe_cgroup.empty() ? std::string("nowhere (none configured)") : options.probe_cgroup.string());
  return std::unique_ptr<BpfDatapath>(new BpfDatapath(std::move(impl)));
}

void BpfDatapath::cleanup(const DatapathOptions& options) {
  datapath::route_libbpf_log();
  const fs::path& root = options.pin_root;
  std::error_code ec;
  if (fs::is_directory(root / "links", ec)) {
    for (const auto& entry : fs::directory_iterator(root / "links")) {
      if (LinkPtr link{bpf_link__open(entry.path().c_str())}) bpf_link__detach(link.get());
      fs::remove(entry.path(), ec);
    }
  }
  if (struct if_nameindex* interfaces = if_nameindex()) {
    for (auto* i = interfaces; i->if_index != 0; ++i)
      for (const auto& hook : kTcHooks) Impl::detach_clsact(static_cast<int>(i->if_index), hook.clsact);
    if_freenameindex(interfaces);
  }
  datapath::remove_local_delivery({options.assign_mark, options.route_table, DatapathOptions::kRulePriority});
  fs::remove_all(root, ec);
  if (ec) throw DatapathError("remove pin root " + root.string(), ec.value());
}

void BpfDatapath::enroll(const WorkloadAttachment& workload) {
  // What this call adds, so that a failure takes back exactly that: links and entries a
  // previous daemon left (adopted at start) keep protecting the pod.
  std::vector<std::string> new_keys;
  std::set<std::string> links_before;
  for (const auto& [name, link] : impl_->links) links_before.insert(name);
  const int workloads_fd = impl_->maps.fds_->workloads.get();
  try {
    Cgroup cgroup = open_cgroup(workload.cgroup);
    zm_workload value{};
    value.flags = workload.mtls_strict ? ZM_WL_MTLS_STRICT : 0;
    value.ifindex = workload.host_veth.empty() ? 0 : interface_index(workload.host_veth);
    value.cgroup_id = cgroup.id;
    for (const auto& ip : workload.ips) {
      const zm_ip_key key = datapath::ip_key(ip);
      zm_workload existing{};
      const bool known = bpf_map_lookup_elem(workloads_fd, &key, &existing) == 0;
      update(workloads_fd, &key, &value, "zm_workloads", "enroll " + workload.name + " (" + ip.to_string() + ")");
      if (!known) new_keys.push_back(bytes_of(&key, sizeof key));
      impl_->claimed_workloads.insert(bytes_of(&key, sizeof key));
    }
    impl_->attach_cgroup(workload.cgroup, impl_->connect->progs.zm_connect4, "connect4");
    impl_->attach_cgroup(workload.cgroup, impl_->connect->progs.zm_connect6, "connect6");
    impl_->attach_cgroup(workload.cgroup, impl_->sockops->progs.zm_sockops, "sockops");
    if (!workload.host_veth.empty()) {
      impl_->attach_tc(workload.host_veth, TcDirection::Ingress);
      impl_->attach_tc(workload.host_veth, TcDirection::Egress);
    }
  } catch (...) {
    // All or nothing for what this call added: a half-enrolled pod would be captured one way
    // and not the other.
    for (const auto& key : new_keys) {
      bpf_map_delete_elem(workloads_fd, key.data());
      impl_->claimed_workloads.erase(key);
    }
    std::vector<std::string> added;
    for (const auto& [name, link] : impl_->links)
      if (!links_before.contains(name)) added.push_back(name);
    for (const auto& name : added) impl_->detach_link(name);
    throw;
  }
}

void BpfDatapath::unenroll(const WorkloadAttachment& workload) {
  for (const auto& ip : workload.ips) {
    const zm_ip_key key = datapath::ip_key(ip);
    bpf_map_delete_elem(impl_->maps.fds_->workloads.get(), &key);
    impl_->claimed_workloads.erase(bytes_of(&key, sizeof key));
  }
  struct stat st{};
  if (stat(workload.cgroup.c_str(), &st) == 0) {
    for (const char* kind : {"connect4", "connect6", "sockops"})
      impl_->detach_link("cg_" + std::to_string(st.st_ino) + "_" + kind);
  }
  // The veth keeps tc ingress (every interface has it); the door goes with the enrolment.
  if (!workload.host_veth.empty())
    impl_->detach_tc(workload.host_veth, if_nametoindex(workload.host_veth.c_str()), TcDirection::Egress);
}

void BpfDatapath::interface_added(const std::string& ifname) {
  if (ifname == "lo") return;
  try {
    impl_->attach_tc(ifname, TcDirection::Ingress);
  } catch (const DatapathError& e) {
    if (e.error_code() != ENODEV) throw;  // gone again already: nothing to hook
  }
}

void BpfDatapath::interface_removed(const std::string& ifname) {
  for (auto direction : {TcDirection::Ingress, TcDirection::Egress}) impl_->detach_tc(ifname, 0, direction);
}

void BpfDatapath::rescan_interfaces() {
  impl_->hook_all_interfaces();
  std::vector<std::string> gone;
  for (const auto& [name, link] : impl_->links)
    if (!tc_link_current(name)) gone.push_back(name);
  for (const auto& name : gone) impl_->detach_link(name);
}

void BpfDatapath::add_destination(const IpAddress& ip, DestinationKind kind) {
  const zm_ip_key key = datapath::ip_key(ip);
  const zm_dest value{static_cast<uint32_t>(kind)};
  update(impl_->maps.fds_->dests.get(), &key, &value, "zm_dests", "add destination " + ip.to_string());
  impl_->claimed_dests.insert(bytes_of(&key, sizeof key));
}

void BpfDatapath::remove_destination(const IpAddress& ip) {
  const zm_ip_key key = datapath::ip_key(ip);
  bpf_map_delete_elem(impl_->maps.fds_->dests.get(), &key);
  impl_->claimed_dests.erase(bytes_of(&key, sizeof key));
}

void BpfDatapath::set_destination_cidrs(const std::vector<IpBlock>& cidrs) {
  std::set<std::string> wanted;
  const int fd = impl_->maps.fds_->dest_cidrs.get();
  for (const auto& c : cidrs) {
    zm_cidr_key key{};
    key.ip = datapath::ip_key(c.address);
    const unsigned max_prefix = key.ip.family == ZM_AF_INET ? 32 : 128;
    if (c.prefix > max_prefix)
      throw std::invalid_argument("pod CIDR " + c.address.to_string() + "/" + std::to_string(c.prefix) +
                                  ": the prefix is longer than the address");
    auto* bytes = reinterpret_cast<uint8_t*>(&key.ip.addr);
    for (unsigned bit = c.prefix; bit < 128; ++bit) bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
    key.prefixlen = ZM_CIDR_FAMILY_BITS + c.prefix;
    wanted.insert(bytes_of(&key, sizeof key));
  }
  for (const auto& key : map_keys(fd, sizeof(zm_cidr_key)))
    if (!wanted.contains(key)) bpf_map_delete_elem(fd, key.data());
  const zm_dest value{ZM_DEST_POD_CIDR};
  for (const auto& key : wanted) update(fd, key.data(), &value, "zm_dest_cidrs", "add a pod CIDR");
}

void BpfDatapath::set_deny_rules(const std::vector<DenyRule>& rules) {
  std::map<std::string, zm_deny> wanted;
  for (const auto& rule : rules) {
    zm_deny_key key{};
    const uint8_t family = datapath::to_zm_ip(rule.destination, key.dst);
    if (datapath::to_zm_ip(rule.source.address, key.src) != family)
      throw std::invalid_argument("deny rule " + std::to_string(rule.id) + ": source " + rule.source.to_string() +
                                  " and destination " + rule.destination.to_string() + " differ in family");
    const unsigned max_prefix = family == ZM_AF_INET ? 32 : 128;
    if (rule.source.prefix > max_prefix)
      throw std::invalid_argument("deny rule " + std::to_string(rule.id) + ": source prefix /" +
                                  std::to_string(rule.source.prefix) + " is longer than the address");
    // Canonical key: host bits of the source cleared.
    auto* src = reinterpret_cast<uint8_t*>(&key.src);
    for (unsigned bit = rule.source.prefix; bit < 128; ++bit) src[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
    key.family = family;
    key.dport = htons(rule.port);
    key.protocol = IPPROTO_TCP;
    key.prefixlen = ZM_DENY_EXACT_BITS + rule.source.prefix;
    wanted[bytes_of(&key, sizeof key)] = zm_deny{rule.id};
  }
  const int fd = impl_->maps.fds_->deny.get();
  // Stale entries out first, so that the old and the new set need not fit side by side.
  for (const auto& key : map_keys(fd, sizeof(zm_deny_key)))
    if (!wanted.contains(key)) bpf_map_delete_elem(fd, key.data());
  for (const auto& [key, value] : wanted)
    update(fd, key.data(), &value, "zm_l4_deny", "add deny rule " + std::to_string(value.rule_id));
}

DatapathCounters BpfDatapath::counters() const { return impl_->maps.counters(); }

std::optional<OriginalDestination> BpfDatapath::original_destination(const TcpEndpoint& peer,
                                                                    const TcpEndpoint& local) {
  return impl_->maps.take_original_destination(peer, local);
}

void BpfDatapath::commit_start() {
  impl_->committed = true;
  impl_->update_adopted_links();
  for (const auto& [ifname, direction] : std::exchange(impl_->clsact_pending, {})) {
    try {
      impl_->attach_tc(ifname, direction);
    } catch (const DatapathError& e) {
      if (e.error_code() != ENODEV) throw;  // the interface left meanwhile
    }
  }
  std::vector<std::string> stale;
  for (const auto& [name, link] : impl_->links)
    if (!impl_->claimed_links.contains(name)) stale.push_back(name);
  for (const auto& name : stale) {
    spdlog::info("datapath: removing link {} that nothing claims any more", name);
    impl_->detach_link(name);
  }
  auto prune_map = [](int fd, const std::set<std::string>& claimed) {
    for (const auto& key : map_keys(fd, sizeof(zm_ip_key)))
      if (!claimed.contains(key)) bpf_map_delete_elem(fd, key.data());
  };
  prune_map(impl_->maps.fds_->workloads.get(), impl_->claimed_workloads);
  prune_map(impl_->maps.fds_->dests.get(), impl_->claimed_dests);
  // Every hook runs this daemon's programs now: the maps of an older layout are nobody's.
  datapath::drop_set_aside_maps(impl_->options.pin_root);
  if (!impl_->layout_changes.empty())
    spdlog::info("datapath: took over from a daemon of another map layout ({} maps recreated); the old maps are "
                 "released",
                 impl_->layout_changes.size());
  const uint32_t zero = 0;
  const zm_layout version{ZM_LAYOUT_VERSION};
  bpf_map_update_elem(bpf_map__fd(impl_->connect->maps.zm_layout), &zero, &version, BPF_ANY);
}

namespace {
int test_run(bpf_program* prog, std::span<const uint8_t> frame, uint32_t mark = 0) {
  __sk_buff ctx{};
  ctx.mark = mark;
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_size_in = static_cast<__u32>(frame.size()),
              .ctx_in = &ctx, .ctx_size_in = sizeof ctx, .repeat = 1);
  if (bpf_prog_test_run_opts(bpf_program__fd(prog), &opts) != 0)
    throw DatapathError(std::string("BPF_PROG_TEST_RUN of ") + bpf_program__name(prog), errno);
  return static_cast<int>(opts.retval);
}
}  // namespace

int BpfDatapath::test_run_tc_ingress(std::span<const uint8_t> frame) { return test_run(impl_->tc->progs.zm_tc_ingress, frame); }
int BpfDatapath::test_run_tc_egress(std::span<const uint8_t> frame, uint32_t mark) {
  return test_run(impl_->door->progs.zm_tc_egress, frame, mark);
}

std::vector<std::string> BpfDatapath::pinned_links() const {
  std::vector<std::string> names;
  for (const auto& [name, link] : impl_->links) names.push_back(name);
  return names;
}

}  // namespace zmesh
