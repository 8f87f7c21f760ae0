#include "metrics.h"

#include <dirent.h>
#include <malloc.h>
#include <unistd.h>
#ifdef ZMESH_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include <fstream>
#include <sstream>

#include "zmesh/telemetry.h"

namespace zmesh {
namespace {

struct Metric {
  const char* name;
  const char* type;
  const char* help;
};

void write(std::ostringstream& out, const Metric& m, const std::string& labels, uint64_t value) {
  out << m.name << labels << ' ' << value << '\n';
}
void header(std::ostringstream& out, const Metric& m) {
  out << "# HELP " << m.name << ' ' << m.help << "\n# TYPE " << m.name << ' ' << m.type << '\n';
}
// A metric with one value and no labels: its header and its line.
void write_one(std::ostringstream& out, const Metric& m, uint64_t value) {
  header(out, m);
  write(out, m, "", value);
}

// Resident set size in bytes, from /proc/self/statm (pages).
uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// The allocator's view of the heap: what zmeshd holds (allocated) and what the allocator keeps
// resident for it, its own metadata included. A gap that stays after a burst is memory freed
// but not given back; allocated that stays is memory still held.
struct HeapFigures {
  const char* allocator;
  uint64_t allocated = 0, resident = 0, metadata = 0;
};

HeapFigures heap_figures() {
#ifdef ZMESH_JEMALLOC
  HeapFigures h{"jemalloc"};
  uint64_t epoch = 1;  // jemalloc's statistics are a snapshot, refreshed by writing "epoch"
  size_t length = sizeof(epoch);
  mallctl("epoch", &epoch, &length, &epoch, length);
  for (auto [name, out] : {std::pair{"stats.allocated", &h.allocated}, std::pair{"stats.resident", &h.resident},
                           std::pair{"stats.metadata", &h.metadata}}) {
    size_t value = 0;
    length = sizeof(value);
    if (mallctl(name, &value, &length, nullptr, 0) == 0) *out = value;
  }
  return h;
#else
  const struct mallinfo2 info = mallinfo2();
  return {"glibc", info.uordblks + info.hblkhd, info.arena + info.hblkhd, 0};
#endif
}

uint64_t open_fds() {
  uint64_t n = 0;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (const dirent* entry = readdir(dir))
      if (entry->d_name[0] != '.') ++n;
    closedir(dir);
    if (n) --n;  // the directory's own fd
  }
  return n;
}


void write_xds(std::ostringstream& out, const XdsMetrics& x) {
  const Metric connected{"zmesh_xds_connected", "gauge", "1 while the xDS stream to istiod is up."};
  write_one(out, connected, x.connected ? 1 : 0);
  const Metric connects{"zmesh_xds_connections_total", "counter", "xDS streams opened to istiod."};
  write_one(out, connects, x.connects);
  const Metric responses{"zmesh_xds_responses_total", "counter",
                         "xDS responses by type and outcome (received; applied: in force; nacked: some or all refused)."};
  header(out, responses);
  for (const auto& t : x.types)
    for (const auto& [outcome, value] : {std::pair{"received", t.received}, std::pair{"applied", t.applied},
                                         std::pair{"nacked", t.nacked}})
      write(out, responses, "{type=\"" + t.name + "\",outcome=\"" + outcome + "\"}", value);
  const Metric resources{"zmesh_xds_resources", "gauge", "Resources held from istiod, by type."};
  header(out, resources);
  for (const auto& t : x.types) write(out, resources, "{type=\"" + t.name + "\"}", t.resources);
  const Metric updated{"zmesh_xds_last_update_timestamp_seconds", "gauge", "When a response of the type was last applied."};
  header(out, updated);
  for (const auto& t : x.types) write(out, updated, "{type=\"" + t.name + "\"}", static_cast<uint64_t>(t.last_update_unix));
  const Metric failures{"zmesh_certificate_fetch_failures_total", "counter", "CreateCertificate calls to istiod that failed."};
  write_one(out, failures, x.certificate_failures);
}

}  // namespace

std::string prometheus_text(const DaemonMetrics& m) {
  const ProxyStats& p = m.proxy;
  const DatapathCounters& kernel = m.kernel;
  std::ostringstream out;
  const Metric accepted{"zmesh_connections_accepted_total", "counter", "Connections accepted, by listener."};
  header(out, accepted);
  write(out, accepted, "{listener=\"outbound\"}", p.outbound_accepted);
  write(out, accepted, "{listener=\"hbone\"}", p.inbound_hbone_accepted);
  write(out, accepted, "{listener=\"plaintext\"}", p.inbound_plain_accepted);
  const Metric active{"zmesh_connections_active", "gauge", "Connections being served."};
  write_one(out, active, p.active);
  const Metric handshakes{"zmesh_tls_handshakes_total", "counter", "Completed HBONE TLS handshakes, by side."};
  header(out, handshakes);
  write(out, handshakes, "{side=\"client\"}", p.client_handshakes);
  write(out, handshakes, "{side=\"server\"}", p.server_handshakes);
  const Metric failures{"zmesh_tls_handshake_failures_total", "counter",
                        "Failed or rejected TLS handshakes, by reason (timeout, certificate, identity, protocol)."};
  header(out, failures);
  for (const auto reason : kHandshakeFailures) {
    auto it = p.handshake_failures_by_reason.find(reason);
    write(out, failures, std::string("{reason=\"") + to_string(reason) + "\"}",
          it == p.handshake_failures_by_reason.end() ? 0 : it->second);
  }
  const Metric worker_accepted{"zmesh_worker_connections_accepted_total", "counter",
                               "Connections accepted, by the proxy worker they were handed to."};
  header(out, worker_accepted);
  for (size_t i = 0; i < m.workers.size(); ++i) {
    const ProxyStats& w = m.workers[i].stats;
    write(out, worker_accepted, "{worker=\"" + std::to_string(i) + "\"}",
          w.outbound_accepted + w.inbound_hbone_accepted + w.inbound_plain_accepted);
  }
  const Metric worker_active{"zmesh_worker_connections_active", "gauge", "Connections being served, by worker."};
  header(out, worker_active);
  for (size_t i = 0; i < m.workers.size(); ++i)
    write(out, worker_active, "{worker=\"" + std::to_string(i) + "\"}", m.workers[i].stats.active);
  const Metric worker_cpu{"zmesh_worker_cpu_seconds_total", "counter",
                          "CPU time of each proxy worker's thread (worker 0's is the daemon's, control included)."};
  header(out, worker_cpu);
  for (size_t i = 0; i < m.workers.size(); ++i)
    out << worker_cpu.name << "{worker=\"" << i << "\"} "
        << std::chrono::duration<double>(m.workers[i].cpu).count() << '\n';
  const Metric pool{"zmesh_hbone_pool_connections", "gauge", "Pooled HBONE connections this node opened (usable)."};
  write_one(out, pool, p.pool_connections);
  const Metric pool_streams{"zmesh_hbone_pool_streams", "gauge", "Streams open on the pooled HBONE connections."};
  write_one(out, pool_streams, p.pool_streams);
  const Metric served{"zmesh_hbone_served_connections", "gauge", "HBONE connections other nodes opened to this one."};
  write_one(out, served, p.served_connections);
  const Metric streams{"zmesh_hbone_streams_opened_total", "counter", "HBONE streams opened on pooled connections."};
  write_one(out, streams, p.streams_opened);
  const Metric refused{"zmesh_connections_refused_total", "counter", "Connections refused by the proxy."};
  write_one(out, refused, p.refused);
  const Metric denials{"zmesh_policy_denials_total", "counter", "Connections denied by authorization, by layer."};
  header(out, denials);
  write(out, denials, "{layer=\"proxy\"}", p.denied);
  write(out, denials, "{layer=\"kernel\"}", kernel.tc_drop_deny);
  const Metric revoked{"zmesh_connections_revoked_total", "counter",
                       "Open connections closed because a policy change denies them."};
  write_one(out, revoked, p.revoked);
  const Metric renewed{"zmesh_certificate_renewals_total", "counter", "Workload certificates renewed."};
  write_one(out, renewed, m.renewals);
  const Metric rotated{"zmesh_certificate_rotations_total", "counter",
                       "CA rotations applied (new roots or a new issuing CA, read on reload)."};
  write_one(out, rotated, m.rotations);
  const Metric expiry{"zmesh_certificate_expiration_timestamp_seconds", "gauge",
                      "When each workload certificate of this node expires (Unix time)."};
  header(out, expiry);
  for (const auto& [identity, not_after] : m.certificate_expiry)
    write(out, expiry, "{identity=\"" + prometheus_escape(identity) + "\"}",
          static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(not_after.time_since_epoch()).count()));
  if (m.xds) write_xds(out, *m.xds);
  const Metric rss{"process_resident_memory_bytes", "gauge", "Resident memory of zmeshd."};
  write_one(out, rss, resident_bytes());
  const Metric fds{"process_open_fds", "gauge", "Open file descriptors of zmeshd."};
  write_one(out, fds, open_fds());
  const HeapFigures heap = heap_figures();
  const Metric allocated{"zmesh_heap_allocated_bytes", "gauge", "Heap bytes zmeshd holds (the allocator's count)."};
  write_one(out, allocated, heap.allocated);
  const Metric heap_resident{"zmesh_heap_resident_bytes", "gauge",
                             "Heap pages the allocator keeps resident, its metadata included."};
  write_one(out, heap_resident, heap.resident);
  const Metric datapath{"zmesh_datapath_events_total", "counter", "Kernel datapath counters (bpf/zmesh_maps.h)."};
  header(out, datapath);
  for (const auto& [name, value] : named_counters(kernel)) write(out, datapath, std::string("{event=\"") + name + "\"}", value);
  return out.str();
}

nlohmann::json xds_json(const XdsMetrics& x) {
  nlohmann::json types = nlohmann::json::object();
  for (const auto& t : x.types)
    types[t.name] = {{"received", t.received}, {"applied", t.applied}, {"nacked", t.nacked},
                     {"resources", t.resources}, {"lastUpdateUnix", t.last_update_unix}};
  return {{"connected", x.connected}, {"connects", x.connects}, {"certificateFetchFailures", x.certificate_failures},
          {"types", types}};
}

nlohmann::json stats_json(const DaemonMetrics& m) {
  const ProxyStats& p = m.proxy;
  nlohmann::json by_reason = nlohmann::json::object();
  for (const auto& [reason, count] : p.handshake_failures_by_reason) by_reason[to_string(reason)] = count;
  nlohmann::json workers = nlohmann::json::array();
  for (const auto& w : m.workers)
    workers.push_back({{"accepted", w.stats.outbound_accepted + w.stats.inbound_hbone_accepted + w.stats.inbound_plain_accepted},
                       {"active", w.stats.active},
                       {"cpuSeconds", std::chrono::duration<double>(w.cpu).count()}});
  const DatapathCounters& kernel = m.kernel;
  nlohmann::json k = nlohmann::json::object();
  for (const auto& [name, value] : named_counters(kernel)) k[name] = value;
  return {{"proxy",
           {{"outboundAccepted", p.outbound_accepted},
            {"hboneAccepted", p.inbound_hbone_accepted},
            {"plaintextAccepted", p.inbound_plain_accepted},
            {"clientHandshakes", p.client_handshakes},
            {"serverHandshakes", p.server_handshakes},
            {"handshakeFailures", p.handshake_failures},
            {"streamsOpened", p.streams_opened},
            {"refused", p.refused},
            {"denied", p.denied},
            {"revoked", p.revoked},
            {"active", p.active},
            {"poolConnections", p.pool_connections},
            {"poolStreams", p.pool_streams},
            {"servedConnections", p.served_connections},
            {"handshakeFailuresByReason", by_reason}}},
          {"workers", workers},
          {"certificateRenewals", m.renewals},
          {"certificateRotations", m.rotations},
          {"xds", m.xds ? xds_json(*m.xds) : nlohmann::json(nullptr)},
          {"heap", [] {
             const HeapFigures h = heap_figures();
             return nlohmann::json{{"allocator", h.allocator}, {"allocatedBytes", h.allocated},
                                   {"residentBytes", h.resident}, {"metadataBytes", h.metadata}};
           }()},
          {"kernel", k}};
}

}  // namespace zmesh
