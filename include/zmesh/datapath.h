// Datapath: the kernel side of zmesh behind a typed API. Callers speak of workloads,
// destinations, deny rules and counters; no file descriptor, map or link leaves this module.
//
// BpfDatapath loads the programs in bpf/, pins maps and links under a pin root (one per
// daemon), and attaches:
//   cgroup/connect4, connect6, sockops  -> each enrolled pod's cgroup
//   the same, node variants             -> the host cgroup (the node's own processes)
//   sockops                             -> the proxy's own cgroup (its side of the pairs)
//   sk_msg                              -> zm_sockhash (when the short-cut is on)
//   tc ingress (tcx, else clsact)       -> every interface of the node's netns but lo
//   tc egress, the pod's door           -> each enrolled pod's host veth
// and adds `ip rule fwmark assign_mark lookup route_table` with a `local default dev lo`
// route in that table, which delivers steered packets to zmeshd's sockets.
// A new BpfDatapath on the same pin root adopts the pinned maps and links (updating the links
// to the new programs) instead of attaching twice; redirection stays attached while no daemon
// runs, so captured connects fail closed. BpfDatapath::cleanup removes all of it.
// Not thread-safe: one owner (the daemon's control path) calls it.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "zmesh/address.h"
#include "zmesh_maps.h"

namespace zmesh {

using IpAddress = boost::asio::ip::address;
using TcpEndpoint = boost::asio::ip::tcp::endpoint;

// A pod enrolled on this node, as the kernel needs to know it.
struct WorkloadAttachment {
  std::string name;                   // for messages
  std::filesystem::path cgroup;       // the pod's cgroup v2 directory
  std::string host_veth;              // node side of the pod's veth; empty = none to hook
  std::vector<IpAddress> ips;
  bool mtls_strict = false;           // plaintext inbound is dropped instead of proxied
};

enum class DestinationKind : uint32_t { Workload = ZM_DEST_WORKLOAD, Service = ZM_DEST_SERVICE, PodCidr = ZM_DEST_POD_CIDR };

// Drop new TCP connections from `source`/`source_prefix` to local pod `destination` on `port`
// (0 = any), at TC, before any socket sees them. TCP only: zmesh meshes TCP (docs/security.md).
struct DenyRule {
  uint32_t id = 0;
  IpBlock source;
  IpAddress destination;
  uint16_t port = 0;
  bool operator<(const DenyRule& other) const;
  bool operator==(const DenyRule&) const = default;
};

enum class TcMode { Auto, Tcx, Clsact };

struct DatapathOptions {
  static constexpr const char* kDefaultPinRoot = "/sys/fs/bpf/zmesh";
  static constexpr uint16_t kOutboundPort = 15001;
  static constexpr uint16_t kInboundPlainPort = 15006;
  static constexpr uint16_t kInboundHbonePort = 15008;
  static constexpr uint32_t kProxyMark = 0x539;    // ztunnel's mark for its own sockets
  static constexpr uint32_t kAssignMark = 0x5a0;   // steered packets
  static constexpr uint32_t kRouteTable = 0x5a0;   // their routing table
  static constexpr uint32_t kRulePriority = 100;   // before the main table (32766)

  std::filesystem::path pin_root = kDefaultPinRoot;
  boost::asio::ip::address_v4 outbound_ip4;        // the proxy address pods connect to
  std::optional<boost::asio::ip::address_v6> outbound_ip6;
  uint16_t outbound_port = kOutboundPort;
  uint16_t inbound_plain_port = kInboundPlainPort;
  uint16_t inbound_hbone_port = kInboundHbonePort;
  uint32_t proxy_mark = kProxyMark;
  uint32_t assign_mark = kAssignMark;
  uint32_t route_table = kRouteTable;
  // The same-node short-cut. Off by default: with a socket in the sockhash, a blocking read
  // can return EAGAIN when woken by anything but data (docs/datapath.md).
  bool sockmap = false;
  // The same-node fast path: connects with a cached ALLOW go pod to pod (docs/datapath.md).
  bool fast_path = true;
  TcMode tc_mode = TcMode::Auto;
  std::filesystem::path proxy_cgroup;              // empty = this process's cgroup
  // The node's own processes: their connects to this node's pods and to services are captured
  // as identity-less (node_capture). Empty = the cgroup v2 root (every process of the node).
  bool node_capture = true;
  std::filesystem::path host_cgroup;
  // The kubelet's cgroup: its health probes reach pods directly, even STRICT ones. Empty = none.
  std::filesystem::path probe_cgroup;
};

using DatapathCounters = zm_counters;

// A counter's name and meaning, as ZM_COUNTERS in bpf/zmesh_maps.h lists them.
struct CounterInfo {
  const char* name;
  const char* help;
  __u64 DatapathCounters::*field;
};
extern const std::vector<CounterInfo> kCounters;

// The counters with their names, for JSON and metrics.
std::vector<std::pair<const char*, uint64_t>> named_counters(const DatapathCounters& c);

// Where a connection accepted on the outbound listener was going, and who opened it.
struct OriginalDestination {
  TcpEndpoint target;
  bool from_node = false;  // a process of the node itself (no workload identity), not a pod
  uint64_t source_netns = 0;  // the connecting socket's netns cookie: which pod (0 = unknown)
};

// Where connections accepted on the outbound listener were going: all the proxy needs of the
// datapath.
class OriginalDestinations {
 public:
  virtual ~OriginalDestinations() = default;
  // From the accepted socket's peer (the pod) and local (the listener) addresses; taken out
  // of the kernel's map.
  virtual std::optional<OriginalDestination> original_destination(const TcpEndpoint& peer, const TcpEndpoint& local) = 0;
};

// The same-node fast path's kernel side (docs/datapath.md "The fast path"): a cache of the
// proxy's ALLOW decisions for (source pod, destination pod, port), voided all at once by a new
// generation; the connections it let go directly; and their open and close events.
struct FastPathKey {
  uint64_t source_netns = 0;  // the source pod's netns cookie (OriginalDestination::source_netns)
  TcpEndpoint destination;    // a pod of this node, and the port
};
struct FastConnection {
  TcpEndpoint client, server;  // the client pod's socket: its own end, the server pod's
  uint64_t source_netns = 0;
  uint64_t generation = 0;     // the generation it was last allowed under
};
struct FastPathEvent {
  enum class Kind { Opened, Closed } kind = Kind::Opened;
  TcpEndpoint client, server;
  bool established = false;    // Closed: whether the connection ever was (else its connect failed)
  uint64_t sent = 0;           // client -> server (Closed)
  uint64_t received = 0;       // server -> client (Closed)
  std::chrono::nanoseconds duration{0};
};

class FastPath {
 public:
  virtual ~FastPath() = default;
  // A new generation: every verdict cached until now is void for new connects. Returns it.
  virtual uint64_t invalidate() = 0;
  // Caches ALLOW for `key` under `generation`, if that is still the current one (a
  // generation started since, e.g. by an enrolment, voids the decision). Whether it did.
  virtual bool allow(const FastPathKey& key, uint64_t generation) = 0;
  // The fast-path connections open now.
  virtual std::vector<FastConnection> connections() const = 0;
  // `connection` was decided again under `generation` and is still allowed.
  virtual void reallow(const FastConnection& connection, uint64_t generation) = 0;
  // Revokes `connection`: its packets are dropped both ways from now on, and the client pod's
  // socket is destroyed in its netns (which sends the server a reset). Throws DatapathError
  // when the socket cannot be destroyed (the packets are dropped all the same).
  virtual void close(const FastConnection& connection) = 0;
  // A descriptor that is readable while events wait, and what takes them.
  virtual int events_fd() const = 0;
  virtual void take_events(const std::function<void(const FastPathEvent&)>& each) = 0;
};

class Datapath : public OriginalDestinations {
 public:
  // Enrolling again (same cgroup) updates in place: no second attachment.
  virtual void enroll(const WorkloadAttachment& workload) = 0;
  virtual void unenroll(const WorkloadAttachment& workload) = 0;
  virtual void add_destination(const IpAddress& ip, DestinationKind kind) = 0;
  virtual void remove_destination(const IpAddress& ip) = 0;
  // Replaces the ranges whose every address is a mesh destination (the cluster's pod CIDRs).
  virtual void set_destination_cidrs(const std::vector<IpBlock>& cidrs) = 0;
  // Replaces every deny rule: afterwards the kernel holds exactly `rules`.
  virtual void set_deny_rules(const std::vector<DenyRule>& rules) = 0;
  virtual DatapathCounters counters() const = 0;
};

// Read-only access to a daemon's pinned maps, for tools and for a proxy in another process.
class PinnedMaps {
 public:
  // Throws DatapathError when the pin root or a map is missing.
  explicit PinnedMaps(const std::filesystem::path& pin_root);
  ~PinnedMaps();
  PinnedMaps(PinnedMaps&&) noexcept;
  PinnedMaps& operator=(PinnedMaps&&) noexcept;

  DatapathCounters counters() const;
  std::optional<OriginalDestination> take_original_destination(const TcpEndpoint& peer, const TcpEndpoint& local);
  std::vector<IpAddress> destinations() const;
  std::vector<IpAddress> workload_ips() const;
  size_t deny_rule_count() const;

  // Decoded entries, for `zmeshctl maps`.
  struct WorkloadEntry {
    IpAddress ip;
    bool mtls_strict = false;
    uint32_t ifindex = 0;
    uint64_t cgroup_id = 0;
  };
  std::vector<WorkloadEntry> workload_entries() const;
  std::vector<std::pair<IpAddress, DestinationKind>> destination_entries() const;
  std::vector<DenyRule> deny_rules() const;  // source: the prefix's network address
  std::vector<IpBlock> destination_cidrs() const;

 private:
  struct Fds;
  std::unique_ptr<Fds> fds_;
};

class BpfDatapath final : public Datapath, public FastPath {
 public:
  // Loads, pins and attaches (adopting what a previous daemon pinned). Throws DatapathError
  // with what failed and why.
  static std::unique_ptr<BpfDatapath> start(const DatapathOptions& options);
  // Detaches and unpins everything under pin_root, removes the routing rule and any clsact
  // filter of ours in this netns. Safe on a partial or empty root.
  static void cleanup(const DatapathOptions& options);

  ~BpfDatapath() override;

  void enroll(const WorkloadAttachment& workload) override;
  void unenroll(const WorkloadAttachment& workload) override;
  void add_destination(const IpAddress& ip, DestinationKind kind) override;
  void remove_destination(const IpAddress& ip) override;
  void set_destination_cidrs(const std::vector<IpBlock>& cidrs) override;
  void set_deny_rules(const std::vector<DenyRule>& rules) override;
  DatapathCounters counters() const override;
  std::optional<OriginalDestination> original_destination(const TcpEndpoint& peer, const TcpEndpoint& local) override;

  uint64_t invalidate() override;
  bool allow(const FastPathKey& key, uint64_t generation) override;
  std::vector<FastConnection> connections() const override;
  void reallow(const FastConnection& connection, uint64_t generation) override;
  void close(const FastConnection& connection) override;
  int events_fd() const override;
  void take_events(const std::function<void(const FastPathEvent&)>& each) override;

  // Interfaces of the node's netns: every one but lo gets tc ingress. start() hooks those that
  // exist; the daemon calls these as links come and go (a pod's veth, a tunnel device).
  void interface_added(const std::string& ifname);
  void interface_removed(const std::string& ifname);
  // Both at once, from a fresh list of the interfaces (after lost netlink events).
  void rescan_interfaces();

  // Call once the initial state is applied (the maps are filled): this daemon's programs go
  // into the links a previous daemon pinned (which ran its programs until now, so that pods
  // stay captured with filled maps throughout, also when the previous daemon's maps had
  // another layout), and what nothing claimed since start() goes: links, workloads and
  // destinations a previous daemon had and this one does not; maps of an older layout.
  void commit_start();

  // Runs one Ethernet frame through the loaded tc ingress (or egress: the door) program with
  // BPF_PROG_TEST_RUN in the caller's netns and returns its verdict (0 pass, 2 drop). For the
  // table-driven tests.
  int test_run_tc_ingress(std::span<const uint8_t> frame);
  int test_run_tc_egress(std::span<const uint8_t> frame, uint32_t mark = 0);  // skb->mark

  // Names of the pinned links (for tests and zmeshctl): "cg_<id>_connect4",
  // "tc_<ifindex>_eth0" (ingress), "tce_<ifindex>_vpod1" (the door), ...
  std::vector<std::string> pinned_links() const;

  struct Impl;

 private:
  explicit BpfDatapath(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zmesh
