// What the admin endpoints say about the daemon itself: zmesh_* metrics (Prometheus text) and
// the stats JSON. Istio's per-connection metrics come from Telemetry (zmesh/telemetry.h).
#pragma once

#include <chrono>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "zmesh/datapath.h"
#include "zmesh/proxy.h"

namespace zmesh {

// The xDS stream and istiod's CA (issue 16); absent without --xds-address.
struct XdsMetrics {
  bool connected = false;
  uint64_t connects = 0, certificate_failures = 0;
  struct Type {
    std::string name;  // "Address", "Authorization"
    uint64_t received = 0, applied = 0, nacked = 0, resources = 0;
    int64_t last_update_unix = 0;
  };
  std::vector<Type> types;
};

struct DaemonMetrics {
  ProxyStats proxy;                  // summed over the workers
  std::vector<WorkerStats> workers;  // each one's share
  DatapathCounters kernel{};
  uint64_t renewals = 0;
  uint64_t rotations = 0;
  std::vector<std::pair<std::string, std::chrono::system_clock::time_point>> certificate_expiry;  // identity, notAfter
  std::optional<XdsMetrics> xds;
};

// zmesh_* metrics and process_* (resident memory, open fds) in Prometheus text format.
std::string prometheus_text(const DaemonMetrics& m);
nlohmann::json stats_json(const DaemonMetrics& m);
nlohmann::json xds_json(const XdsMetrics& x);  // also zmeshctl status's "xdsStream"

}  // namespace zmesh
