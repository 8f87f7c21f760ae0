// A daemon's kernel maps as JSON (see include/zmesh/maps_json.h).
#include "zmesh/maps_json.h"

namespace zmesh {

nlohmann::json maps_json(const PinnedMaps& maps) {
  nlohmann::json counters = nlohmann::json::object();
  for (const auto& [name, value] : named_counters(maps.counters())) counters[name] = value;
  nlohmann::json workloads = nlohmann::json::array(), destinations = nlohmann::json::array(),
                 deny = nlohmann::json::array();
  for (const auto& w : maps.workload_entries())
    workloads.push_back({{"ip", w.ip.to_string()},
                         {"mtlsMode", w.mtls_strict ? "STRICT" : "PERMISSIVE"},
                         {"ifindex", w.ifindex},
                         {"cgroupId", w.cgroup_id}});
  for (const auto& [ip, kind] : maps.destination_entries())
    destinations.push_back({{"ip", ip.to_string()}, {"kind", kind == DestinationKind::Service ? "service" : "workload"}});
  for (const auto& r : maps.deny_rules())
    deny.push_back({{"rule", r.id},
                    {"source", r.source.to_string()},
                    {"destination", r.destination.to_string()},
                    {"port", r.port},
                    {"protocol", "TCP"}});
  nlohmann::json cidrs = nlohmann::json::array();
  for (const auto& c : maps.destination_cidrs()) cidrs.push_back(c.to_string());
  return {{"counters", counters}, {"workloads", workloads}, {"destinations", destinations}, {"podCidrs", cidrs},
          {"denyRules", deny}};
}

}  // namespace zmesh
