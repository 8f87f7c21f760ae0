// The node proxy: the listeners that carry captured connections through the mesh.
//   outbound  :15001 on the pods' gateway addresses: recover the original destination, find the
//             destination workload, carry the bytes in an HBONE stream to its node (pooled
//             mTLS connections), or straight to it when it is on this node
//   inbound   :15008 (transparent): HBONE server; verifies the client's SPIFFE identity,
//             authorizes, answers CONNECT 200 once the local pod accepted, else 400/401/503
//   plaintext :15006 (transparent): non-mesh clients, delivered only to PERMISSIVE pods
// Every listener is bound in the constructor, so a taken port fails start-up. One coroutine per
// connection; every wait a peer controls has a deadline.
//
// Workers (docs/proxy.md "Workers"): N event loops, each on its own thread; worker 0 is
// the daemon's own loop. The listeners accept on the daemon's loop and hand each connection to
// the next worker in turn, where it lives to its end with that worker's counters, HBONE pool
// and connection registry. Shared by all, and safe for it: the mesh snapshot (read-only), the
// certificates, the telemetry, the kernel's maps. Proxy's own methods are called on the
// daemon's thread; they reach the other workers by posting to them and waiting.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "zmesh/certificates.h"
#include "zmesh/datapath.h"
#include "zmesh/mesh.h"
#include "zmesh/state.h"
#include "zmesh/telemetry.h"

namespace zmesh {

struct ProxyOptions {
  std::vector<boost::asio::ip::address> outbound_addresses;  // where pods' captured connects land
  uint16_t outbound_port = DatapathOptions::kOutboundPort;
  uint16_t inbound_hbone_port = DatapathOptions::kInboundHbonePort;
  uint16_t inbound_plain_port = DatapathOptions::kInboundPlainPort;
  uint32_t proxy_mark = DatapathOptions::kProxyMark;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds pool_idle_timeout{60000};  // pooled HBONE connections with no stream
  std::chrono::milliseconds hbone_keepalive{10000};     // PING after this silence; closed after twice it
  // The cluster's pod CIDRs (--pod-cidr): a destination inside one that the config does not
  // name is a pod some node enrolled through its CNI plugin. It gets HBONE to its address, and
  // the server must present an identity of this trust domain (its exact one is unknown).
  std::vector<IpBlock> pod_cidrs;
  // A pod of this node is connected to from its client's own address (IP_TRANSPARENT; the
  // pod's answers are kept on the node by zm_tc_ingress), as ztunnel does; off: from the node.
  bool preserve_source = true;
  size_t workers = 1;  // event loops, each on a thread (zmeshd's --workers)
  // Hops with no TLS relayed with splice(2); off when the sockhash short-cut is on (its
  // sockets' bytes are not where splice reads them).
  bool splice = true;
};

// Why a TLS handshake failed, for zmesh_tls_handshake_failures_total{reason}.
enum class HandshakeFailure { Timeout, Certificate, Identity, Protocol };
inline constexpr HandshakeFailure kHandshakeFailures[] = {HandshakeFailure::Timeout, HandshakeFailure::Certificate,
                                                          HandshakeFailure::Identity, HandshakeFailure::Protocol};
const char* to_string(HandshakeFailure why);  // "timeout", "certificate", "identity", "protocol"

// What the proxy has done, for logs, tests and metrics.
struct ProxyStats {
  uint64_t outbound_accepted = 0;
  uint64_t inbound_hbone_accepted = 0;
  uint64_t inbound_plain_accepted = 0;
  uint64_t client_handshakes = 0;  // HBONE connections this node opened
  uint64_t server_handshakes = 0;  // HBONE connections other nodes opened to this one
  uint64_t handshake_failures = 0;  // the sum of the next
  std::map<HandshakeFailure, uint64_t> handshake_failures_by_reason;
  uint64_t streams_opened = 0;
  uint64_t refused = 0;            // connections refused (no identity, unknown destination, ...)
  uint64_t denied = 0;             // of those, by authorization policy
  uint64_t revoked = 0;            // open connections closed because a new policy denies them
  uint64_t active = 0;             // connections being served now
  // Gauges, computed when stats() is called.
  uint64_t pool_connections = 0;   // usable pooled HBONE connections this node opened
  uint64_t pool_streams = 0;       // streams open on them
  uint64_t served_connections = 0; // HBONE connections other nodes opened to this one

  ProxyStats& operator+=(const ProxyStats& other);  // workers' stats summed
};

// One worker's share: its stats, and the CPU time its thread has used (worker 0's thread is
// the daemon's, so its figure includes the control plane's work).
struct WorkerStats {
  ProxyStats stats;
  std::chrono::nanoseconds cpu{0};
};

// Everything the proxy needs, handed down from the composition root.
struct ProxyInputs {
  boost::asio::io_context& io;
  OriginalDestinations& originals;  // where captured connections were going (the kernel's record)
  const MeshState& state;  // read per connection: a new snapshot applies to new connections
  Certificates& certificates;
  Telemetry& telemetry;
  ProxyOptions options;
  FastPath* fast_path = nullptr;  // the kernel's same-node fast path; null = off
};

class Proxy {
 public:
  explicit Proxy(ProxyInputs inputs);  // binds every listener; throws with the address and cause
  ~Proxy();

  void start();
  // Stops accepting, lets open connections finish up to `deadline`, then closes the rest and
  // calls `done`.
  void drain(std::chrono::milliseconds deadline, std::function<void()> done);
  ProxyStats stats() const;  // summed over the workers
  std::vector<WorkerStats> worker_stats() const;
  // After a new snapshot is published: closes (with a reset, both ends) the open connections
  // this node authorized that the new policies deny, or whose destination left this node.
  // Returns how many it closed.
  size_t reauthorize();
  // After a CA rotation: every HBONE connection, pooled and served, gets a GOAWAY. Streams open
  // on them carry on to their end; new streams go over new connections, whose handshakes use
  // the new certificates and roots. Returns how many connections it retired.
  size_t retire_connections();
  // Posts `work` to every worker's thread, without waiting: upkeep that must run on each
  // thread (zmeshd flushes each thread's allocator cache with it).
  void post_to_each_worker(const std::function<void()>& work);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace zmesh
