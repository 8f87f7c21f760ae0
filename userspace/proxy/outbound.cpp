// Outbound connections (see outbound.h).
#include "outbound.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "labels.h"

namespace zmesh::proxy {
namespace {

std::optional<SpiffeId> identity_of(const Workload* source) {
  return source ? std::optional(source->identity) : std::nullopt;
}
std::string name_of(const Workload* source) { return source ? source->identity.uri() : std::string("the node itself"); }

}  // namespace

awaitable<void> Outbound::serve(tcp::socket client, uint64_t id) {
  ++ctx_.stats.outbound_accepted;
  reset_on_close(client);
  const auto ends = ends_of(client);
  if (!ends) co_return;  // reset before we got to it: nothing to carry
  const auto& [peer, local] = *ends;
  const auto orig = originals_.original_destination(peer, local);
  ConnectionRecord record = new_record(id, Direction::Outbound, peer, local);
  auto refuse = [&](const std::string& why) {
    ++ctx_.stats.refused;
    spdlog::warn("[c{}] outbound {} -> {}: {}", id, text(peer), orig ? text(orig->target) : std::string("?"), why);
    abort_socket(client);
    record.error = why;
    if (record.labels.response_flags == "-") record.labels.response_flags = "CONNECT";
    report(ctx_.telemetry, record, Outcome::Failed);
  };
  if (!orig) co_return refuse("no original destination recorded (a connect zmesh did not capture?)");
  record.destination = orig->target;
  const auto snap = ctx_.state.current();
  const Mesh& mesh = snap->mesh;
  // A pod's connect carries the pod's identity; one of the node's own processes carries none
  // (its address is one of the node's: a reply to any other would not come back to it).
  const Workload* src = orig->from_node ? nullptr : mesh.by_ip(peer.address());
  if (!orig->from_node) {
    if (src && src->config.origin == WorkloadConfig::Origin::AwaitingXds)
      co_return refuse("the source's identity is not known yet: its Workload has not come from istiod");
    if (!src || !src->local) co_return refuse("the source is not a workload of this node");
    record.labels.source_workload = workload_label(*src);
    record.labels.source_workload_namespace = src->config.namespace_;
    record.labels.source_principal = src->identity.uri();
  }

  std::vector<Candidate> candidates;
  std::optional<Workload> unknown_pod;  // a pod of another node's CNI, inside a pod CIDR: lives in this frame
  const tcp::endpoint target = orig->target;
  // A destination behind a waypoint is the waypoint's to reach (its L7 policies are the
  // destination's), with the original target in the CONNECT, as ztunnel's build_request
  // does: a service's waypoint for service-addressed traffic, a workload's for the rest, but
  // not for the waypoint's own connections (no loop).
  const auto to_waypoint = [&](const std::string& what, const std::string& waypoint, const WaypointAt& at,
                               const Service* service) -> std::optional<std::string> {
    auto hop = waypoint_hop(at, target, service);
    if (const auto* missing = std::get_if<std::string>(&hop))
      return what + " is behind the waypoint " + waypoint + ", which " + *missing;
    candidates.push_back(std::get<Candidate>(hop));
    return std::nullopt;
  };
  if (const Workload* dst = mesh.by_ip(target.address())) {
    const std::string& waypoint = dst->config.waypoint;
    const WaypointAt at = waypoint.empty() ? WaypointAt{} : resolve_waypoint(mesh, waypoint);
    if (!waypoint.empty() && !at.includes(src)) {
      if (auto why = to_waypoint("workload " + key_of(dst->config), waypoint, at, nullptr)) co_return refuse(*why);
    } else {
      candidates.push_back({dst, target});
    }
  } else if (const Service* service = mesh.service_by_vip(target.address())) {
    const std::string name = service->config.namespace_ + "/" + service->config.name;
    record.labels.destination_service = service_hostname(*service);
    if (!service->config.waypoint.empty()) {
      const std::string& waypoint = service->config.waypoint;
      if (auto why = to_waypoint("service " + service->key, waypoint, resolve_waypoint(mesh, waypoint), service))
        co_return refuse(*why);
    } else {
      const auto port = service->config.ports.find(target.port());
      if (port == service->config.ports.end())
        co_return refuse("service " + name + " has no port " + std::to_string(target.port()));
      if (service->endpoints.empty()) co_return refuse("service " + name + " has no endpoints");
      candidates = endpoints_of(*service, target.port(), mesh.node());
    }
  } else if (in_pod_cidr(target.address())) {
    auto config = std::make_shared<WorkloadConfig>();
    config->name = "unknown";
    config->namespace_ = "unknown";
    config->canonical_revision = "unknown";
    config->node = "pod " + unmapped(target.address()).to_string();  // its own pool entry
    unknown_pod.emplace(std::move(config), SpiffeId{mesh.trust_domain(), "", ""}, false);
    candidates.push_back({&*unknown_pod, target});
  } else {
    co_return refuse("unknown destination, refused");
  }
  Call call{*snap, client, id, peer, src, record, *orig};
  for (const auto& candidate : candidates) {
    if (co_await deliver(call, candidate) == Delivery::Done) co_return;
    // The hop that failed: the waypoint, not the destination behind it.
    balancer_.failed(candidate.via ? candidate.via->address() : candidate.target.address());
  }
  refuse(candidates.size() > 1 ? "every endpoint failed" : "the destination cannot be reached");
}

size_t Balancer::next(const std::string& service) {
  std::lock_guard lock(mutex_);
  return round_robin_[service]++;
}

void Balancer::failed(const asio::ip::address& endpoint) {
  std::lock_guard lock(mutex_);
  failed_until_[endpoint] = std::chrono::steady_clock::now() + kFailurePenalty;
}

bool Balancer::failing(const asio::ip::address& endpoint) const {
  std::lock_guard lock(mutex_);
  auto it = failed_until_.find(endpoint);
  return it != failed_until_.end() && it->second > std::chrono::steady_clock::now();
}

// Round-robin over the service's endpoints, those that failed recently or are unhealthy last
// (still tried when nothing else is left). Round-robin rather than least-connections: each node
// sees only its own connections, so per-node counts would not balance the service anyway, and
// with pooled HBONE a new stream costs the same on every endpoint. A service that keeps
// clients on their node (STRICT load balancing by NODE: internalTrafficPolicy Local) offers
// this node's endpoints only.
std::vector<Outbound::Candidate> Outbound::endpoints_of(const Service& service, uint16_t service_port,
                                                        const std::string& node) {
  std::vector<Candidate> out;
  const size_t n = service.endpoints.size();
  const size_t first = balancer_.next(service.key) % n;
  const bool node_only = service.config.node_local && service.config.load_balancing == ServiceConfig::LoadBalancing::Strict;
  for (size_t i = 0; i < n; ++i) {
    const Workload* w = service.endpoints[(first + i) % n];
    const auto target_port = service.target_port(*w, service_port);
    if (w->config.ips.empty() || !target_port || (node_only && w->config.node != node)) continue;
    out.push_back({w, tcp::endpoint(w->config.ips.front(), *target_port), &service});
  }
  std::stable_partition(out.begin(), out.end(), [&](const Candidate& c) {
    return c.workload->config.healthy && !balancer_.failing(c.target.address());
  });
  return out;
}

bool Outbound::in_pod_cidr(const asio::ip::address& ip) const {
  const auto address = unmapped(ip);
  return std::any_of(ctx_.options.pod_cidrs.begin(), ctx_.options.pod_cidrs.end(),
                     [&](const IpBlock& b) { return b.contains(address); });
}

// What a waypoint's text names in the mesh: its pod (by address), or its Service (by VIP or
// namespace/hostname); neither while it has no address yet.
Outbound::WaypointAt Outbound::resolve_waypoint(const Mesh& mesh, const std::string& waypoint) {
  const auto at = parse_waypoint(waypoint);
  if (!at) return {.missing = "is not a waypoint address"};  // the parsers refuse these
  if (at->ip) {
    if (const Workload* pod = mesh.by_ip(*at->ip)) return {.pod = pod, .ip = *at->ip, .port = at->port};
    if (const Service* service = mesh.service_by_vip(*at->ip)) return {.service = service, .port = at->port};
    return {.missing = "has no address yet: no workload or service has that address"};
  }
  if (const Service* service = mesh.service(at->service)) return {.service = service, .port = at->port};
  return {.missing = "has no address yet: istiod has sent no Service " + at->service};
}

std::variant<Outbound::Candidate, std::string> Outbound::waypoint_hop(const WaypointAt& at, const tcp::endpoint& target,
                                                                    const Service* service) {
  if (at.pod) return Candidate{at.pod, target, service, tcp::endpoint(*at.ip, at.port)};
  if (!at.service) return at.missing;
  // One of the waypoint service's pods, round-robin, healthy first, at an address of the
  // client's family when it has one (ztunnel adapts a hostname waypoint to the caller's family).
  const auto& pods = at.service->endpoints;
  const bool v4 = unmapped(target.address()).is_v4();
  const size_t n = pods.size(), first = n ? balancer_.next(at.service->key) % n : 0;
  std::optional<Candidate> unhealthy;
  for (size_t i = 0; i < n; ++i) {
    const Workload* pod = pods[(first + i) % n];
    const auto& ips = pod->config.ips;
    auto ip = std::find_if(ips.begin(), ips.end(), [&](const auto& a) { return a.is_v4() == v4; });
    if (ip == ips.end()) ip = ips.begin();
    if (ip == ips.end()) continue;
    Candidate hop{pod, target, service, tcp::endpoint(*ip, at.port)};
    if (pod->config.healthy) return hop;
    if (!unhealthy) unhealthy = hop;
  }
  if (unhealthy) return *unhealthy;
  return "has no address yet: its Service " + at.service->key + " has no endpoint with an address";
}

bool Outbound::WaypointAt::includes(const Workload* source) const {
  if (!source) return false;
  if (pod) return pod == source;
  return service && std::find(service->endpoints.begin(), service->endpoints.end(), source) != service->endpoints.end();
}

// The node itself has no identity: it never rides HBONE, and a pod of this node decides it as
// plaintext (a STRICT pod refuses it).
awaitable<Outbound::Delivery> Outbound::deliver(Call& call, const Candidate& to) {
  const Workload& dst = *to.workload;
  const bool over_hbone = to.via || (call.source && dst.config.protocol == TunnelProtocol::Hbone && !dst.local);
  call.record.destination = to.target;
  call.record.labels = istio_labels("source", call.source, identity_of(call.source), dst, to.service, call.snap.mesh,
                                    to.target.port(), over_hbone ? "mutual_tls" : "none");
  if (to.via && !call.source) {
    call.record.error = "the node itself has no identity to present to the waypoint " + text(*to.via);
    spdlog::warn("[c{}] {} -> {}: {}", call.id, text(call.peer), text(to.target), call.record.error);
    co_return refused(call, "CONNECT", false);
  }
  if (over_hbone) co_return co_await deliver_hbone(call, to);
  co_return co_await deliver_direct(call, to);
}

// To a pod of this node, which this node authorizes as the far side of HBONE would; or to a
// workload outside the mesh (a service endpoint with protocol TCP), plain TCP as the app asked.
awaitable<Outbound::Delivery> Outbound::deliver_direct(Call& call, const Candidate& to) {
  const bool same_node = to.workload->local;
  const Authorization who{identity_of(call.source), call.peer.address(), to.target};
  auto denied = [&](const std::string& why) {
    ++ctx_.stats.refused;
    ++ctx_.stats.denied;
    spdlog::warn("[c{}] {} ({}) -> {} (same node): {}", call.id, text(call.peer), name_of(call.source),
                 text(to.target), why);
    call.record.error = why;
    return refused(call, "DENY", true);
  };
  if (same_node)
    if (auto why = ConnectionManager::why_denied(call.snap, who)) co_return denied(*why);
  tcp::socket upstream(ctx_.io);
  try {
    // (no ternary: GCC 12 mishandles co_await inside a conditional expression)
    if (same_node)
      upstream = co_await ctx_.connect_to_pod(*to.workload, to.target, call.peer.address(),
                                              "[c" + std::to_string(call.id) + "] same node");
    else
      upstream = co_await connect(to.target, ctx_.options.proxy_mark, ctx_.options.connect_timeout);
    reset_on_close(upstream);
  } catch (const system_error& e) {
    spdlog::warn("[c{}] {} -> {} ({}): {}", call.id, text(call.peer), text(to.target),
                 same_node ? "same node" : "plain TCP workload", e.what());
    call.record.error = e.code().message();
    co_return Delivery::TryNext;
  }
  if (same_node)
    if (auto why = ctx_.connections.denied_since(call.snap, who)) co_return denied(*why);
  report(ctx_.telemetry, call.record, Outcome::Opened, same_node);
  std::optional<ConnectionManager::Grant> grant;  // this node authorized it, and may take it back
  if (same_node) {
    grant.emplace(ctx_.connections, who, upstream,
                  "[c" + std::to_string(call.id) + "] " + text(call.peer) + " -> " + text(to.target) + " (same node)");
    // A pod that asked for this pod itself (not a service's endpoint the proxy picked) may
    // reach it directly next time, until anything changes.
    if (call.source && call.orig.target == to.target)
      fast_path_.allowed(call.snap, *call.source, call.orig.source_netns, to.target);
  }
  const auto result = co_await relay(call.client, upstream, ctx_.options.splice);
  finished(call, result, to, same_node);
  co_return Delivery::Done;
}

awaitable<Outbound::Delivery> Outbound::deliver_hbone(Call& call, const Candidate& to) {
  const Workload& dst = *to.workload;
  std::shared_ptr<http2::Stream> stream;
  // A waypoint is its own pool entry: a connection to it carries streams for it alone, while a
  // node's zmeshd serves every pod of its node.
  const std::string hop = to.via ? "waypoint " + unmapped(to.via->address()).to_string() : "node " + dst.config.node;
  const HbonePool::Key key{call.source->identity, dst.identity, to.via ? hop : dst.config.node};
  const tcp::endpoint node_address = to.via.value_or(tcp::endpoint(to.target.address(), ctx_.options.inbound_hbone_port));
  try {
    stream = co_await pool_.open_stream(key, node_address, text(to.target), call.peer.address().to_string());
  } catch (const std::exception& e) {
    spdlog::warn("[c{}] {} -> {}: HBONE to {} failed: {}", call.id, text(call.peer), text(to.target), hop, e.what());
    call.record.error = e.what();
    co_return Delivery::TryNext;
  }
  if (stream->status() != 200) {
    spdlog::warn("[c{}] {} -> {}: {} answered {}", call.id, text(call.peer), text(to.target), hop, stream->status());
    call.record.error = hop + " answered " + std::to_string(stream->status());
    if (stream->status() == 503) co_return Delivery::TryNext;
    co_return refused(call, stream->status() == 401 ? "DENY" : "CONNECT", false);
  }
  report(ctx_.telemetry, call.record, Outcome::Opened);
  const auto result = co_await relay(call.client, stream);
  finished(call, result, to, false);
  co_return Delivery::Done;
}

Outbound::Delivery Outbound::refused(Call& call, const char* flags, bool same_node) {
  call.record.labels.response_flags = flags;
  report(ctx_.telemetry, call.record, Outcome::Failed, same_node);
  abort_socket(call.client);
  return Delivery::Done;
}

void Outbound::finished(Call& call, const RelayResult& result, const Candidate& to, bool same_node) {
  spdlog::info("[c{}] outbound {} ({}) -> {} ({}): sent {} received {}{}{}", call.id, text(call.peer),
               name_of(call.source), text(to.target), to.workload->identity.uri(), result.sent, result.received,
               result.error.empty() ? "" : ", error: ", result.error);
  call.record.request_bytes = result.sent;
  call.record.response_bytes = result.received;
  call.record.error = result.error;
  report(ctx_.telemetry, call.record, Outcome::Closed, same_node);
}

}  // namespace zmesh::proxy
