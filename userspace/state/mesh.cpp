// The mesh snapshot (see include/zmesh/mesh.h).
#include "zmesh/mesh.h"

#include "zmesh/address.h"

#include <algorithm>

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
  services_.reserve(config.services.size());
  for (size_t i = 0; i < config.services.size(); ++i) {
    const auto& svc = config.services[i];
    Service service{svc, {}};
    for (const auto& name : svc.endpoints) {
      auto it = std::find_if(workloads_.begin(), workloads_.end(), [&](const Workload& w) {
        return w.config.name == name && w.config.namespace_ == svc.namespace_;
      });
      if (it == workloads_.end())
        throw ConfigError("services[" + std::to_string(i) + "].endpoints: no workload '" + name + "' in namespace '" +
                          svc.namespace_ + "'");
      service.endpoints.push_back(&*it);
    }
    for (const Workload* endpoint : service.endpoints)
      for (const auto& [service_port, target_port] : svc.ports)
        by_endpoint_.emplace(std::pair{endpoint, target_port}, services_.size());  // the first service wins
    services_.push_back(std::move(service));
    for (const auto& vip : svc.vips) {
      if (by_ip_.contains(unmapped(vip)) || !by_vip_.emplace(unmapped(vip), services_.size() - 1).second)
        throw ConfigError("services[" + std::to_string(i) + "].vips: " + vip.to_string() + " is already in use");
    }
  }
}

const Service* Mesh::service_by_vip(const boost::asio::ip::address& ip) const {
  auto it = by_vip_.find(unmapped(ip));
  return it == by_vip_.end() ? nullptr : &services_[it->second];
}

const Workload* Mesh::by_ip(const boost::asio::ip::address& ip) const {
  auto it = by_ip_.find(unmapped(ip));
  return it == by_ip_.end() ? nullptr : &workloads_[it->second];
}

const Service* Mesh::service_for(const Workload& workload, uint16_t target_port) const {
  auto it = by_endpoint_.find({&workload, target_port});
  return it == by_endpoint_.end() ? nullptr : &services_[it->second];
}

std::vector<const Workload*> Mesh::local_workloads() const {
  std::vector<const Workload*> out;
  for (const auto& w : workloads_)
    if (w.local) out.push_back(&w);
  return out;
}

}  // namespace zmesh
