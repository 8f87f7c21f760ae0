// The mesh snapshot (see include/zmesh/mesh.h).
#include "zmesh/mesh.h"

#include "zmesh/address.h"

#include <algorithm>

namespace zmesh {
Mesh::Mesh(const MeshConfig& config, const std::string& trust_domain, const std::string& node)
    : node_(node), trust_domain_(trust_domain) {
  workloads_.reserve(config.workloads.size());
  for (const auto& w : config.workloads) {
    const std::string& domain = w.trust_domain.empty() ? trust_domain : w.trust_domain;
        // A pod with no identity yet is no workload of this node to the proxy: it refuses its
    // connections and connections to it, and no certificate is issued for it.
    const bool local = w.node == node && w.origin != WorkloadConfig::Origin::AwaitingXds;
    workloads_.push_back({w, SpiffeId{domain, w.namespace_, w.service_account}, local});
    by_name_.emplace(key_of(w), workloads_.size() - 1);
    for (const auto& ip : w.ips) {
      if (!by_ip_.emplace(unmapped(ip), workloads_.size() - 1).second)
        throw ConfigError("workload " + w.namespace_ + "/" + w.name + ": IP " + ip.to_string() +
                          " already belongs to another workload");
    }
  }
  services_.reserve(config.services.size());
  std::map<std::string, size_t> by_key;  // Service::key -> index
  for (size_t i = 0; i < config.services.size(); ++i) {
    const auto& svc = config.services[i];
    Service service{svc, {}, service_key(svc)};
    for (const auto& name : svc.endpoints) {
      auto it = by_name_.find(svc.namespace_ + "/" + name);
      if (it == by_name_.end())
        throw ConfigError("services[" + std::to_string(i) + "].endpoints: no workload '" + name + "' in namespace '" +
                          svc.namespace_ + "'");
      service.endpoints.push_back(&workloads_[it->second]);
    }
    by_key.emplace(service.key, services_.size());
    services_.push_back(std::move(service));
    for (const auto& vip : svc.vips) {
      if (by_ip_.contains(unmapped(vip)) || !by_vip_.emplace(unmapped(vip), services_.size() - 1).second)
        throw ConfigError("services[" + std::to_string(i) + "].vips: " + vip.to_string() + " is already in use");
    }
  }
  // Workloads that name their services (xDS): endpoints of those, in the workloads' order. A
  // service not (yet) known is skipped: istiod may send a workload before its service.
  for (const auto& w : workloads_)
    for (const auto& [key, ports] : w.config.services)
      if (auto it = by_key.find(key); it != by_key.end()) {
        auto& endpoints = services_[it->second].endpoints;
        if (std::find(endpoints.begin(), endpoints.end(), &w) == endpoints.end()) endpoints.push_back(&w);
      }
  for (size_t s = 0; s < services_.size(); ++s)
    for (const Workload* endpoint : services_[s].endpoints)
      for (const auto& [service_port, target_port] : services_[s].config.ports)
        if (auto target = services_[s].target_port(*endpoint, service_port))
          by_endpoint_.emplace(std::pair{endpoint, *target}, s);  // the first service wins
}


std::optional<uint16_t> Service::target_port(const Workload& endpoint, uint16_t service_port) const {
  const auto port = config.ports.find(service_port);
  if (port == config.ports.end()) return std::nullopt;
  if (auto own = endpoint.config.services.find(key); own != endpoint.config.services.end())
    if (auto mapped = own->second.find(service_port); mapped != own->second.end()) return mapped->second;
  return port->second;
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
