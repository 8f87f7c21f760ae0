// The mesh snapshot (see include/zmesh/mesh.h).
#include "zmesh/mesh.h"

#include "zmesh/address.h"

namespace zmesh {
Mesh::Mesh(const MeshConfig& config, const std::string& trust_domain, const std::string& node)
    : node_(node), trust_domain_(trust_domain) {
  workloads_.reserve(config.workloads.size());
  for (const auto& w : config.workloads) {
    workloads_.push_back({w, SpiffeId{trust_domain, w.namespace_, w.service_account}, w.node == node});
    for (const auto& ip : w.ips) {
      if (!by_ip_.emplace(unmapped(ip), workloads_.size() - 1).second)
        throw ConfigError("workload " + w.namespace_ + "/" + w.name + ": IP " + ip.to_string() +
                          " already belongs to another workload");
    }
  }
}

const Workload* Mesh::by_ip(const boost::asio::ip::address& ip) const {
  auto it = by_ip_.find(unmapped(ip));
  return it == by_ip_.end() ? nullptr : &workloads_[it->second];
}

std::vector<const Workload*> Mesh::local_workloads() const {
  std::vector<const Workload*> out;
  for (const auto& w : workloads_)
    if (w.local) out.push_back(&w);
  return out;
}

}  // namespace zmesh
