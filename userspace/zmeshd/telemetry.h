// What the admin endpoints say: Prometheus text and the stats JSON (the config dump is the
// Controller's).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "zmesh/datapath.h"
#include "zmesh/proxy.h"

namespace zmesh {

// zmesh_* metrics: the proxy's counters, certificate renewals, and the kernel's counters.
std::string prometheus_text(const ProxyStats& proxy, const DatapathCounters& kernel, uint64_t renewals);
nlohmann::json stats_json(const ProxyStats& proxy, const DatapathCounters& kernel, uint64_t renewals);

}  // namespace zmesh
