// PinnedMaps (include/zmesh/datapath.h): the maps as any process on the node reads them, by
// their pins; and the map I/O the datapath writes them with (map_io.h).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>

#include "fd.h"
#include "keys.h"
#include "map_io.h"
#include "map_names.h"
#include "zmesh/datapath.h"
#include "zmesh/datapath_error.h"

namespace zmesh {
namespace fs = std::filesystem;
using datapath::map_keys;
using datapath::open_pinned_map;
using datapath::UniqueFd;
namespace map = datapath::map;

namespace datapath {

UniqueFd open_pinned_map(const fs::path& pin_root, const char* name) {
  const fs::path path = pin_root / name;
  UniqueFd fd(bpf_obj_get(path.c_str()));
  if (!fd) throw DatapathError("open pinned map " + path.string() + " (is zmeshd running with this pin root?)", errno);
  return fd;
}

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

void delete_unless(int fd, size_t key_size, const std::function<bool(const std::string& key)>& keep) {
  for (const auto& key : map_keys(fd, key_size))
    if (!keep(key)) bpf_map_delete_elem(fd, key.data());
}

}  // namespace datapath

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
  fds_->dests = open_pinned_map(pin_root, map::zm_dests);
  fds_->workloads = open_pinned_map(pin_root, map::zm_workloads);
  fds_->orig = open_pinned_map(pin_root, map::zm_orig);
  fds_->deny = open_pinned_map(pin_root, map::zm_l4_deny);
  fds_->counters = open_pinned_map(pin_root, map::zm_counters);
  fds_->dest_cidrs = open_pinned_map(pin_root, map::zm_dest_cidrs);
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
    throw DatapathError(std::string("read map ") + map::zm_counters, errno);
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
  return OriginalDestination{datapath::endpoint(orig), (orig.flags & ZM_ORIG_FROM_NODE) != 0, orig.netns_cookie};
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

}  // namespace zmesh
