// Outbound (ztunnel's outbound.rs): connections the kernel captured from this node's pods (and
// from the node's own processes) on :15001. It recovers where each was going, picks the
// destination workload (a pod, a service's endpoint, a pod in a pod CIDR) and carries it
// either over HBONE to the destination's node or directly: to a pod of this node (which this
// node authorizes, as the far side of HBONE would), or to a workload outside the mesh.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

#include "context.h"
#include "copy.h"
#include "fast_path.h"
#include "pool.h"
#include "zmesh/datapath.h"

namespace zmesh::proxy {

// Where each service's next connection starts (round-robin over its endpoints), and which
// endpoints failed recently (tried last for a while): one memory for the node, shared by the
// workers' Outbounds under a mutex, so that a service spreads evenly whichever worker takes a
// connection and an endpoint that failed on one worker is avoided on all.
class Balancer {
 public:
  size_t next(const std::string& service);  // a counter per service, advanced by each call
  void failed(const asio::ip::address& endpoint);
  bool failing(const asio::ip::address& endpoint) const;

 private:
  static constexpr auto kFailurePenalty = std::chrono::seconds(10);  // a failed endpoint goes last this long
  mutable std::mutex mutex_;
  std::map<asio::ip::address, std::chrono::steady_clock::time_point> failed_until_;
  std::map<std::string, size_t> round_robin_;
};

class Outbound {
 public:
  Outbound(ProxyContext& context, OriginalDestinations& originals, HbonePool& pool, FastPathCache& fast_path,
           Balancer& balancer)
      : ctx_(context), originals_(originals), pool_(pool), fast_path_(fast_path), balancer_(balancer) {}

  awaitable<void> serve(tcp::socket client, uint64_t id);

 private:
  // A destination to try: a workload, the address to reach it at, and the service it was
  // reached through, if any.
  struct Candidate {
    const Workload* workload;
    tcp::endpoint target;
    const Service* service = nullptr;
    // Through a waypoint: `workload` is the waypoint's pod, `via` its HBONE address, and
    // `target` the CONNECT target (what the client asked for).
    std::optional<tcp::endpoint> via = std::nullopt;
  };
  // One connection on its way: who opened it and what is known so far for telemetry.
  struct Call {
    const MeshSnapshot& snap;
    tcp::socket& client;
    uint64_t id;
    tcp::endpoint peer;
    const Workload* source;  // null: the node itself (no identity)
    ConnectionRecord& record;
    const OriginalDestination& orig;  // what the client asked for, from which netns
  };
  enum class Delivery { Done, TryNext };

  std::vector<Candidate> endpoints_of(const Service& service, uint16_t service_port, const std::string& node);
  // A waypoint (as config and xDS name it) found in the mesh: its pod, or its Service; else
  // what is missing, to finish "the waypoint W ...".
  struct WaypointAt {
    const Workload* pod = nullptr;
    const Service* service = nullptr;
    std::optional<asio::ip::address> ip = std::nullopt;  // the pod's, as the waypoint names it
    uint16_t port = 0;                    // its HBONE port
    std::string missing = {};
    // Whether `source` is (a pod of) the waypoint: its own connections are not sent back to it.
    bool includes(const Workload* source) const;
  };
  static WaypointAt resolve_waypoint(const Mesh& mesh, const std::string& waypoint);
  // The waypoint pod a connection to `target` goes to (its address, in `via`).
  std::variant<Candidate, std::string> waypoint_hop(const WaypointAt& at, const tcp::endpoint& target,
                                                    const Service* service);
  bool in_pod_cidr(const asio::ip::address& ip) const;
  // Carries the call to one candidate. TryNext when it could not reach it before any byte
  // moved (the next endpoint may serve it); Done otherwise (relayed, or refused for good).
  awaitable<Delivery> deliver(Call& call, const Candidate& to);
  awaitable<Delivery> deliver_direct(Call& call, const Candidate& to);
  awaitable<Delivery> deliver_hbone(Call& call, const Candidate& to);
  Delivery refused(Call& call, const char* flags, bool same_node);
  void finished(Call& call, const RelayResult& result, const Candidate& to, bool same_node);

  ProxyContext& ctx_;
  OriginalDestinations& originals_;
  HbonePool& pool_;
  FastPathCache& fast_path_;
  Balancer& balancer_;
};

}  // namespace zmesh::proxy
