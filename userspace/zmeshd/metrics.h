// What the admin endpoints say about the daemon itself: zmesh_* metrics (Prometheus text) and
// the stats JSON. Istio's per-connection metrics come from Telemetry (zmesh/telemetry.h).
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "zmesh/datapath.h"
#include "zmesh/proxy.h"

namespace zmesh {

struct DaemonMetrics {
  ProxyStats proxy;
  DatapathCounters kernel{};
  uint64_t renewals = 0;
  uint64_t rotations = 0;
  std::vector<std::pair<std::string, std::chrono::system_clock::time_point>> certificate_expiry;  // identity, notAfter
};

// zmesh_* metrics and process_* (resident memory, open fds) in Prometheus text format.
std::string prometheus_text(const DaemonMetrics& m);
nlohmann::json stats_json(const DaemonMetrics& m);

}  // namespace zmesh
