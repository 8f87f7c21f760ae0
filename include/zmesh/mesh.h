// The mesh as this node sees it: one immutable snapshot of the config's workloads with their
// SPIFFE identities, looked up by IP. Every lookup on the connection path reads it.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "zmesh/config.h"
#include "zmesh/identity.h"

namespace zmesh {

struct Workload {
  WorkloadConfig config;
  SpiffeId identity;
  bool local = false;  // enrolled on this node
};

struct Service {
  ServiceConfig config;
  std::vector<const Workload*> endpoints;
  // service_key(config), made once per snapshot: "namespace/hostname", how xDS workloads name
  // the services they are endpoints of (read per connection).
  std::string key;
  // The port of `endpoint` that serves `service_port`: the endpoint's own (xDS resolves named
  // ports per pod), else the service's. nullopt: the service has no such port.
  std::optional<uint16_t> target_port(const Workload& endpoint, uint16_t service_port) const;
};

class Mesh {
 public:
  Mesh(const MeshConfig& config, const std::string& trust_domain, const std::string& node);

  // The workload that owns `ip` (IPv4-mapped IPv6 is looked up as IPv4), or nullptr.
  const Workload* by_ip(const boost::asio::ip::address& ip) const;
  // The service that owns VIP `ip`, or nullptr.
  const Service* service_by_vip(const boost::asio::ip::address& ip) const;
  std::vector<const Workload*> local_workloads() const;
  // The first service with `workload` as an endpoint and `target_port` as a target port, or
  // nullptr: what a connection straight to a pod is reported against.
  const Service* service_for(const Workload& workload, uint16_t target_port) const;
  const std::string& node() const { return node_; }
  const std::string& trust_domain() const { return trust_domain_; }

 private:
  std::string node_, trust_domain_;
  std::vector<Workload> workloads_;
  std::map<boost::asio::ip::address, size_t> by_ip_;
  std::map<std::string, size_t> by_name_;  // "namespace/name" -> workload
  std::vector<Service> services_;
  std::map<boost::asio::ip::address, size_t> by_vip_;
  // (endpoint, target port) -> the first service with both: built once, read per connection.
  std::map<std::pair<const Workload*, uint16_t>, size_t> by_endpoint_;
};

}  // namespace zmesh
