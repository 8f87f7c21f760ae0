// A daemon's kernel maps, decoded into JSON for `zmeshctl maps` and the control socket:
// counters, workloads, destinations, pod CIDRs and deny rules.
#pragma once

#include <nlohmann/json.hpp>

#include "zmesh/datapath.h"

namespace zmesh {

nlohmann::json maps_json(const PinnedMaps& maps);

}  // namespace zmesh
