// BpfDatapath (include/zmesh/datapath.h): loads the programs, keeps the maps in step with
// the mesh, and attaches through Links (links.h).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <net/if.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
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
#include "kernel_objects.h"
#include "keys.h"
#include "layout.h"
#include "libbpf_log.h"
#include "links.h"
#include "map_io.h"
#include "map_names.h"
#include "netlink.h"
#include "sock_destroy.h"
#include "zmesh/datapath.h"
#include "zmesh/datapath_error.h"
#include "zmesh/kernel.h"

namespace zmesh {
namespace fs = std::filesystem;
using namespace datapath;  // NOLINT: this file is the datapath's own

namespace {

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

// Clears the bits of a key's address past `prefix`: one key per network, whatever host bits
// the config wrote.
void clear_host_bits(void* address, unsigned prefix) {
  auto* bytes = static_cast<uint8_t*>(address);
  for (unsigned bit = prefix; bit < 128; ++bit) bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// BpfDatapath

bool DenyRule::operator<(const DenyRule& other) const {
  return std::tie(id, source, destination, port) < std::tie(other.id, other.source, other.destination, other.port);
}

struct BpfDatapath::Impl {
  UniqueFd pin_root_lock;  // held for the daemon's life: one daemon per pin root
  DatapathOptions options;
  SkeletonPtr<connect_bpf> connect;
  SkeletonPtr<sockops_bpf> sockops;
  SkeletonPtr<tc_ingress_bpf> tc;
  SkeletonPtr<tc_egress_bpf> door;
  std::optional<PinnedMaps> maps;  // for what userspace reads back: counters, original destinations
  std::unique_ptr<Links> links;
  // Map entries this daemon's config asked for since start; commit_start() drops the rest.
  std::set<std::string> claimed_workloads, claimed_dests;
  std::vector<LayoutChange> layout_changes;  // maps set aside at start
  std::map<std::string, fs::path> pod_cgroups;  // enrolled pods' IPs (zm_ip_key bytes) -> cgroup: the fast path's close
  struct FreeRingBuffer {
    void operator()(ring_buffer* rb) const { ring_buffer__free(rb); }
  };
  std::unique_ptr<ring_buffer, FreeRingBuffer> fast_events;
  std::function<void(const FastPathEvent&)> on_fast_event;  // during take_events

  // Every skeleton shares the pinned maps; the connect object's handles stand for them all.
  int workloads_fd() const { return bpf_map__fd(connect->maps.zm_workloads); }
  int dests_fd() const { return bpf_map__fd(connect->maps.zm_dests); }
  int dest_cidrs_fd() const { return bpf_map__fd(connect->maps.zm_dest_cidrs); }
  int deny_fd() const { return bpf_map__fd(connect->maps.zm_l4_deny); }
  int fast_state_fd() const { return bpf_map__fd(connect->maps.zm_fast_state); }
  int fast_verdicts_fd() const { return bpf_map__fd(connect->maps.zm_fast_verdicts); }
  int fast_conns_fd() const { return bpf_map__fd(connect->maps.zm_fast_conns); }

  uint64_t fast_generation() const {
    const uint32_t zero = 0;
    zm_fast_state state{};
    if (bpf_map_lookup_elem(fast_state_fd(), &zero, &state) != 0)
      throw DatapathError(std::string("read map ") + map::zm_fast_state, errno);
    return state.generation;
  }

  // The program a pinned link runs, from its name (links.h).
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
    c.fast_path_enabled = options.fast_path ? 1 : 0;
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

  LocalDeliveryRoute route() const { return {options.assign_mark, options.route_table, DatapathOptions::kRulePriority}; }
};

BpfDatapath::BpfDatapath(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BpfDatapath::~BpfDatapath() = default;

std::unique_ptr<BpfDatapath> BpfDatapath::start(const DatapathOptions& options) {
  route_libbpf_log();
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
  impl->maps.emplace(options.pin_root);
  const TcMode tc_mode = options.tc_mode == TcMode::Clsact || (options.tc_mode == TcMode::Auto && !facts.tcx)
                             ? TcMode::Clsact
                             : TcMode::Tcx;
  impl->links = std::make_unique<Links>(options.pin_root, tc_mode, options.tc_mode,
                                        [impl = impl.get()](const std::string& name) { return impl->program_for(name); });
  Links& links = *impl->links;
  links.adopt();

  if (options.sockmap &&
      bpf_prog_attach(bpf_program__fd(impl->sockops->progs.zm_sk_msg), bpf_map__fd(impl->sockops->maps.zm_sockhash),
                      BPF_SK_MSG_VERDICT, 0) != 0)
    throw DatapathError(std::string("attach sk_msg to ") + map::zm_sockhash, errno);
  links.attach_cgroup(impl->proxy_cgroup(), "sockops");
  if (options.node_capture) {
    const fs::path host = impl->host_cgroup();
    for (const char* kind : {"node_connect4", "node_connect6", "node_sockops"}) links.attach_cgroup(host, kind);
  }
  links.hook_all_interfaces();
  add_local_delivery(impl->route());
  spdlog::info("datapath: programs loaded, maps and links pinned under {} (tc via {}, short-cut {}, fast path {}); "
               "the node's own connects {}; kubelet probes from {}",
               options.pin_root.string(), links.tc_mode() == TcMode::Tcx ? "tcx" : "clsact",
               options.sockmap ? "on" : "off", options.fast_path ? "on" : "off",
               options.node_capture ? "captured in " + impl->host_cgroup().string() : std::string("not captured"),
               options.probe_cgroup.empty() ? std::string("nowhere (none configured)") : options.probe_cgroup.string());
  std::unique_ptr<BpfDatapath> datapath(new BpfDatapath(std::move(impl)));
  datapath->invalidate();  // what a previous daemon cached is its decision, not ours
  return datapath;
}

void BpfDatapath::cleanup(const DatapathOptions& options) {
  route_libbpf_log();
  Links::remove_all(options.pin_root);
  remove_local_delivery({options.assign_mark, options.route_table, DatapathOptions::kRulePriority});
  std::error_code ec;
  fs::remove_all(options.pin_root, ec);
  if (ec) throw DatapathError("remove pin root " + options.pin_root.string(), ec.value());
}

void BpfDatapath::enroll(const WorkloadAttachment& workload) {
  // A cached verdict names a destination by address: one for a pod that had this address
  // before must not let a connect through to this one.
  invalidate();
  // What this call adds, so that a failure takes back exactly that: links and entries a
  // previous daemon left (adopted at start) keep protecting the pod.
  std::vector<std::string> new_keys;
  const auto links_before = impl_->links->names();
  const int workloads_fd = impl_->workloads_fd();
  try {
    Cgroup cgroup = open_cgroup(workload.cgroup);
    zm_workload value{};
    value.flags = workload.mtls_strict ? ZM_WL_MTLS_STRICT : 0;
    value.ifindex = workload.host_veth.empty() ? 0 : interface_index(workload.host_veth);
    value.cgroup_id = cgroup.id;
    for (const auto& ip : workload.ips) {
      const zm_ip_key key = ip_key(ip);
      zm_workload existing{};
      const bool known = bpf_map_lookup_elem(workloads_fd, &key, &existing) == 0;
      update(workloads_fd, &key, &value, map::zm_workloads, "enroll " + workload.name + " (" + ip.to_string() + ")");
      if (!known) new_keys.push_back(bytes_of(&key, sizeof key));
      impl_->claimed_workloads.insert(bytes_of(&key, sizeof key));
      impl_->pod_cgroups[bytes_of(&key, sizeof key)] = workload.cgroup;
    }
    for (const char* kind : {"connect4", "connect6", "sockops"}) impl_->links->attach_cgroup(workload.cgroup, kind);
    if (!workload.host_veth.empty()) {
      impl_->links->attach_tc(workload.host_veth, TcDirection::Ingress);
      impl_->links->attach_tc(workload.host_veth, TcDirection::Egress);
    }
  } catch (...) {
    // All or nothing for what this call added: a half-enrolled pod would be captured one way
    // and not the other.
    for (const auto& key : new_keys) {
      bpf_map_delete_elem(workloads_fd, key.data());
      impl_->claimed_workloads.erase(key);
    }
    const std::set<std::string> before(links_before.begin(), links_before.end());
    for (const auto& name : impl_->links->names())
      if (!before.contains(name)) impl_->links->detach(name);
    throw;
  }
}

void BpfDatapath::unenroll(const WorkloadAttachment& workload) {
  invalidate();
  for (const auto& ip : workload.ips) {
    const zm_ip_key key = ip_key(ip);
    bpf_map_delete_elem(impl_->workloads_fd(), &key);
    impl_->claimed_workloads.erase(bytes_of(&key, sizeof key));
    impl_->pod_cgroups.erase(bytes_of(&key, sizeof key));
  }
  struct stat st{};
  if (stat(workload.cgroup.c_str(), &st) == 0)
    for (const char* kind : {"connect4", "connect6", "sockops"}) impl_->links->detach_cgroup(st.st_ino, kind);
  // The veth keeps tc ingress (every interface has it); the door goes with the enrolment.
  if (!workload.host_veth.empty())
    impl_->links->detach_tc(workload.host_veth, if_nametoindex(workload.host_veth.c_str()), TcDirection::Egress);
}

void BpfDatapath::interface_added(const std::string& ifname) {
  if (ifname == "lo") return;
  try {
    impl_->links->attach_tc(ifname, TcDirection::Ingress);
  } catch (const DatapathError& e) {
    if (e.error_code() != ENODEV) throw;  // gone again already: nothing to hook
  }
}

void BpfDatapath::interface_removed(const std::string& ifname) {
  for (auto direction : {TcDirection::Ingress, TcDirection::Egress}) impl_->links->detach_tc(ifname, 0, direction);
}

void BpfDatapath::rescan_interfaces() { impl_->links->hook_all_interfaces(); }

void BpfDatapath::add_destination(const IpAddress& ip, DestinationKind kind) {
  const zm_ip_key key = ip_key(ip);
  const zm_dest value{static_cast<uint32_t>(kind)};
  update(impl_->dests_fd(), &key, &value, map::zm_dests, "add destination " + ip.to_string());
  impl_->claimed_dests.insert(bytes_of(&key, sizeof key));
}

void BpfDatapath::remove_destination(const IpAddress& ip) {
  const zm_ip_key key = ip_key(ip);
  bpf_map_delete_elem(impl_->dests_fd(), &key);
  impl_->claimed_dests.erase(bytes_of(&key, sizeof key));
}

void BpfDatapath::set_destination_cidrs(const std::vector<IpBlock>& cidrs) {
  std::set<std::string> wanted;
  for (const auto& c : cidrs) {
    zm_cidr_key key{};
    key.ip = ip_key(c.address);
    const unsigned max_prefix = key.ip.family == ZM_AF_INET ? 32 : 128;
    if (c.prefix > max_prefix)
      throw std::invalid_argument("pod CIDR " + c.address.to_string() + "/" + std::to_string(c.prefix) +
                                  ": the prefix is longer than the address");
    clear_host_bits(&key.ip.addr, c.prefix);
    key.prefixlen = ZM_CIDR_FAMILY_BITS + c.prefix;
    wanted.insert(bytes_of(&key, sizeof key));
  }
  const int fd = impl_->dest_cidrs_fd();
  delete_unless(fd, sizeof(zm_cidr_key), [&](const std::string& key) { return wanted.contains(key); });
  const zm_dest value{ZM_DEST_POD_CIDR};
  for (const auto& key : wanted) update(fd, key.data(), &value, map::zm_dest_cidrs, "add a pod CIDR");
}

void BpfDatapath::set_deny_rules(const std::vector<DenyRule>& rules) {
  std::map<std::string, zm_deny> wanted;
  for (const auto& rule : rules) {
    zm_deny_key key{};
    const uint8_t family = to_zm_ip(rule.destination, key.dst);
    if (to_zm_ip(rule.source.address, key.src) != family)
      throw std::invalid_argument("deny rule " + std::to_string(rule.id) + ": source " + rule.source.to_string() +
                                  " and destination " + rule.destination.to_string() + " differ in family");
    const unsigned max_prefix = family == ZM_AF_INET ? 32 : 128;
    if (rule.source.prefix > max_prefix)
      throw std::invalid_argument("deny rule " + std::to_string(rule.id) + ": source prefix /" +
                                  std::to_string(rule.source.prefix) + " is longer than the address");
    clear_host_bits(&key.src, rule.source.prefix);
    key.family = family;
    key.dport = htons(rule.port);
    key.protocol = IPPROTO_TCP;
    key.prefixlen = ZM_DENY_EXACT_BITS + rule.source.prefix;
    wanted[bytes_of(&key, sizeof key)] = zm_deny{rule.id};
  }
  const int fd = impl_->deny_fd();
  // Stale entries out first, so that the old and the new set need not fit side by side.
  delete_unless(fd, sizeof(zm_deny_key), [&](const std::string& key) { return wanted.contains(key); });
  for (const auto& [key, value] : wanted)
    update(fd, key.data(), &value, map::zm_l4_deny, "add deny rule " + std::to_string(value.rule_id));
}

DatapathCounters BpfDatapath::counters() const { return impl_->maps->counters(); }

std::optional<OriginalDestination> BpfDatapath::original_destination(const TcpEndpoint& peer,
                                                                    const TcpEndpoint& local) {
  return impl_->maps->take_original_destination(peer, local);
}

// The fast path (docs/datapath.md "The fast path").

uint64_t BpfDatapath::invalidate() {
  const uint32_t zero = 0;
  const zm_fast_state next{impl_->fast_generation() + 1};
  update(impl_->fast_state_fd(), &zero, &next, map::zm_fast_state, "start a new fast-path generation");
  return next.generation;
}

bool BpfDatapath::allow(const FastPathKey& key, uint64_t generation) {
  if (impl_->fast_generation() != generation) return false;
  zm_fast_key k{};
  k.netns_cookie = key.source_netns;
  k.dst = ip_key(key.destination.address());
  k.dport = htons(key.destination.port());
  // Stamped with `generation`, not read again: if one starts between the check and the
  // write, this verdict is already stale and the programs ignore it.
  const zm_fast_verdict verdict{generation};
  update(impl_->fast_verdicts_fd(), &k, &verdict, map::zm_fast_verdicts, "cache an ALLOW");
  return true;
}

std::vector<FastConnection> BpfDatapath::connections() const {
  std::vector<FastConnection> out;
  const int fd = impl_->fast_conns_fd();
  for (const auto& key : map_keys(fd, sizeof(zm_tuple))) {
    zm_tuple t{};
    std::memcpy(&t, key.data(), sizeof t);
    zm_fast_conn conn{};
    if (bpf_map_lookup_elem(fd, &t, &conn) != 0 || conn.revoked) continue;  // closed or taken back meanwhile
    out.push_back({{from_zm_ip(t.local, t.family), ntohs(t.local_port)},
                   {from_zm_ip(t.remote, t.family), ntohs(t.remote_port)},
                   conn.netns_cookie,
                   conn.generation});
  }
  return out;
}

namespace {
zm_tuple fast_tuple(const FastConnection& c) {
  zm_tuple t{};
  t.family = to_zm_ip(c.client.address(), t.local);
  to_zm_ip(c.server.address(), t.remote);
  t.local_port = htons(c.client.port());
  t.remote_port = htons(c.server.port());
  return t;
}
}  // namespace

void BpfDatapath::reallow(const FastConnection& connection, uint64_t generation) {
  const zm_tuple t = fast_tuple(connection);
  zm_fast_conn conn{};
  if (bpf_map_lookup_elem(impl_->fast_conns_fd(), &t, &conn) != 0) return;  // closed meanwhile
  conn.generation = generation;
  bpf_map_update_elem(impl_->fast_conns_fd(), &t, &conn, BPF_EXIST);
}

void BpfDatapath::close(const FastConnection& connection) {
  // Revoked first: tc drops its packets both ways from now on, whether or not the reset below
  // reaches the socket. The entry goes when sockops sees the socket close.
  const zm_tuple t = fast_tuple(connection);
  zm_fast_conn conn{};
  if (bpf_map_lookup_elem(impl_->fast_conns_fd(), &t, &conn) != 0) return;  // closed meanwhile
  conn.revoked = 1;
  bpf_map_update_elem(impl_->fast_conns_fd(), &t, &conn, BPF_EXIST);
  const zm_ip_key client = ip_key(connection.client.address());
  const auto pod = impl_->pod_cgroups.find(bytes_of(&client, sizeof client));
  if (pod == impl_->pod_cgroups.end())
    throw DatapathError("reset fast-path connection from " + connection.client.address().to_string() +
                            ": no pod of this node has that address any more",
                        ESRCH);
  destroy_pod_socket(pod->second, connection.source_netns, connection.client, connection.server);
}

int BpfDatapath::events_fd() const {
  if (!impl_->fast_events) {
    auto on_event = [](void* ctx, void* data, size_t size) -> int {
      auto* impl = static_cast<Impl*>(ctx);
      if (size < sizeof(zm_fast_event) || !impl->on_fast_event) return 0;
      zm_fast_event e{};
      std::memcpy(&e, data, sizeof e);
      FastPathEvent event;
      event.kind = e.kind == ZM_FAST_OPENED ? FastPathEvent::Kind::Opened : FastPathEvent::Kind::Closed;
      event.client = {from_zm_ip(e.tuple.local, e.tuple.family), ntohs(e.tuple.local_port)};
      event.server = {from_zm_ip(e.tuple.remote, e.tuple.family), ntohs(e.tuple.remote_port)};
      event.established = e.established != 0;
      event.sent = e.bytes_sent;
      event.received = e.bytes_received;
      event.duration = std::chrono::nanoseconds(e.duration_ns);
      impl->on_fast_event(event);
      return 0;
    };
    impl_->fast_events.reset(
        ring_buffer__new(bpf_map__fd(impl_->sockops->maps.zm_fast_events), on_event, impl_.get(), nullptr));
    if (!impl_->fast_events) throw DatapathError(std::string("read ring buffer ") + map::zm_fast_events, errno);
  }
  return ring_buffer__epoll_fd(impl_->fast_events.get());
}

void BpfDatapath::take_events(const std::function<void(const FastPathEvent&)>& each) {
  events_fd();  // the ring buffer, once
  impl_->on_fast_event = each;
  const int n = ring_buffer__consume(impl_->fast_events.get());
  impl_->on_fast_event = nullptr;
  if (n < 0) throw DatapathError(std::string("read ring buffer ") + map::zm_fast_events, -n);
}

void BpfDatapath::commit_start() {
  impl_->links->commit();
  delete_unless(impl_->workloads_fd(), sizeof(zm_ip_key),
                [&](const std::string& key) { return impl_->claimed_workloads.contains(key); });
  delete_unless(impl_->dests_fd(), sizeof(zm_ip_key),
                [&](const std::string& key) { return impl_->claimed_dests.contains(key); });
  // Every hook runs this daemon's programs now: the maps of an older layout are nobody's.
  drop_set_aside_maps(impl_->options.pin_root);
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

std::vector<std::string> BpfDatapath::pinned_links() const { return impl_->links->names(); }

}  // namespace zmesh
