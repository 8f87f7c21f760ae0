// The mesh as this node sees it: the workloads with their SPIFFE identities and the services
// with their endpoints, looked up by IP. Every lookup on the connection path reads it.
//
// A Mesh is a value that is cheap to copy (its indexes are SharedMaps): the controller makes
// the next version from the last by copying it and putting or removing the entries a change
// touches, then settle() checks them and rebuilds what depends on them. One workload's change
// costs the same in a cluster of ten pods or of fifty thousand. Entries are immutable and
// shared between versions; a connection keeps the snapshot it started with, so its Workload
// and Service pointers stay valid.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "zmesh/config.h"
#include "zmesh/identity.h"
#include "zmesh/shared_map.h"

namespace zmesh {

struct Workload {
  Workload(std::shared_ptr<const WorkloadConfig> c, SpiffeId id, bool is_local)
      : shared(std::move(c)), config(*shared), identity(std::move(id)), local(is_local) {}
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;
  const std::shared_ptr<const WorkloadConfig> shared;  // what `config` refers to: one copy for all versions
  const WorkloadConfig& config;
  SpiffeId identity;
  bool local = false;  // enrolled on this node, with an identity
};

struct Service {
  Service(std::shared_ptr<const ServiceConfig> c, std::string k)
      : shared(std::move(c)), config(*shared), key(std::move(k)) {}
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;
  const std::shared_ptr<const ServiceConfig> shared;
  const ServiceConfig& config;
  std::vector<const Workload*> endpoints;  // the config's, then the workloads naming it, by key
  // service_key(config): "namespace/hostname", how xDS workloads name the services they are
  // endpoints of (read per connection).
  std::string key;
  // The port of `endpoint` that serves `service_port`: the endpoint's own (xDS resolves named
  // ports per pod), else the service's. nullopt: the service has no such port.
  std::optional<uint16_t> target_port(const Workload& endpoint, uint16_t service_port) const;
};

class Mesh {
 public:
  Mesh(std::string trust_domain, std::string node);
  // Every entry of `config` put and settled. Throws ConfigError.
  Mesh(const MeshConfig& config, std::string trust_domain, std::string node);

  // A change: puts replace the entry of the same key (a workload's namespace/name, a service's
  // service_key), removals of unknown keys do nothing. A put refuses an entry that lists one
  // address twice (ConfigError); the rest is checked by settle().
  void put(std::shared_ptr<const WorkloadConfig> workload);
  void remove_workload(const std::string& key);
  void put(std::shared_ptr<const ServiceConfig> service);
  void remove_service(const std::string& key);
  // Checks what the change touched (an address owned twice, a service endpoint that is not
  // there) and rebuilds the services whose endpoints changed. Throws ConfigError naming the
  // entry; the Mesh is then not to be used (the controller keeps the last good one).
  void settle();

  // The workload that owns `ip` (IPv4-mapped IPv6 is looked up as IPv4), or nullptr.
  const Workload* by_ip(const boost::asio::ip::address& ip) const;
  const Workload* workload(const std::string& key) const;  // by namespace/name
  // The service that owns VIP `ip`, or nullptr.
  const Service* service_by_vip(const boost::asio::ip::address& ip) const;
  const Service* service(const std::string& key) const;  // by service_key
  // Local workloads (on this node, with an identity), by key.
  std::vector<const Workload*> local_workloads() const;
  // Every workload whose node is this one, also those still waiting for an identity.
  std::vector<const Workload*> workloads_here() const;
  // Every workload or service, sorted by key (for listings: a walk over all of them).
  std::vector<const Workload*> workloads() const;
  std::vector<const Service*> services() const;
  size_t workload_count() const { return workloads_.size(); }
  size_t service_count() const { return services_.size(); }
  // The first service (by key) with `workload` as an endpoint and `target_port` as a target
  // port, or nullptr: what a connection straight to a pod is reported against.
  const Service* service_for(const Workload& workload, uint16_t target_port) const;
  const std::string& node() const { return node_; }
  const std::string& trust_domain() const { return trust_domain_; }

 private:
  using WorkloadPtr = std::shared_ptr<const Workload>;
  using ServicePtr = std::shared_ptr<const Service>;
  using Keys = std::shared_ptr<std::set<std::string>>;  // written only while no other version shares it
  static void edit_keys(SharedMap<std::string, Keys>& index, const std::string& at, const std::string& key, bool add);
  void touch_address(const boost::asio::ip::address& ip, const std::string& owner, bool taken);
  template <typename Ptr>
  void release(SharedMap<boost::asio::ip::address, Ptr>& index, const std::vector<boost::asio::ip::address>& addresses,
               const Ptr& owner, const std::string& tag);
  ServicePtr build(const Service& old) const;

  std::string node_, trust_domain_;
  SharedMap<std::string, WorkloadPtr> workloads_;     // namespace/name ->
  SharedMap<boost::asio::ip::address, WorkloadPtr> by_ip_;
  SharedMap<std::string, ServicePtr> services_;       // service_key ->
  SharedMap<boost::asio::ip::address, ServicePtr> by_vip_;
  SharedMap<std::string, Keys> members_;              // service_key -> the workloads naming it (xDS)
  SharedMap<std::string, Keys> listed_in_;            // workload namespace/name -> services listing it (file)
  std::map<std::string, WorkloadPtr> here_;           // this node's workloads (a node has ~100)

  // The change being made, until settle(): addresses put or removed with the keys that held
  // them ("w:" workload, "s:" service), and the services to rebuild.
  std::map<boost::asio::ip::address, std::set<std::string>> contested_;
  std::set<std::string> dirty_services_;
};

}  // namespace zmesh
