// The mesh (see include/zmesh/mesh.h).
#include "zmesh/mesh.h"

#include "zmesh/address.h"

#include <algorithm>

namespace zmesh {
namespace {

using boost::asio::ip::address;

bool holds(const std::vector<address>& addresses, const address& ip) {
  return std::any_of(addresses.begin(), addresses.end(), [&](const address& a) { return unmapped(a) == ip; });
}

// One owner, one address: an address listed twice (also as its IPv4-mapped form) is refused.
void refuse_repeats(const std::vector<address>& addresses, const std::string& what) {
  for (size_t i = 0; i < addresses.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (unmapped(addresses[i]) == unmapped(addresses[j]))
        throw ConfigError(what + ": IP " + unmapped(addresses[i]).to_string() + " is listed twice");
}

}  // namespace

Mesh::Mesh(std::string trust_domain, std::string node) : node_(std::move(node)), trust_domain_(std::move(trust_domain)) {}

Mesh::Mesh(const MeshConfig& config, std::string trust_domain, std::string node)
    : Mesh(std::move(trust_domain), std::move(node)) {
  for (const auto& w : config.workloads) put(std::make_shared<const WorkloadConfig>(w));
  for (const auto& s : config.services) put(std::make_shared<const ServiceConfig>(s));
  settle();
}

void Mesh::edit_keys(SharedMap<std::string, Keys>& index, const std::string& at, const std::string& key, bool add) {
  Keys* keys = index.find_mutable(at);
  if (!keys) {
    if (add) index.put(at, std::make_shared<std::set<std::string>>(std::set<std::string>{key}));
    return;
  }
  // Another version may share the set itself; this map's slot is already its own.
  if (keys->use_count() > 1) *keys = std::make_shared<std::set<std::string>>(**keys);
  if (add) (*keys)->insert(key);
  else (*keys)->erase(key);
  if ((*keys)->empty()) index.erase(at);
}

// An address a change gives (`taken`) or takes: its holders before and after are checked by
// settle(). An address given that nobody holds and no one touched yet is not looked at again:
// a later claim of it finds this owner in the index and records both.
void Mesh::touch_address(const address& ip, const std::string& owner, bool taken) {
  if (taken && !by_ip_.contains(ip) && !by_vip_.contains(ip) && !contested_.contains(ip)) return;
  auto& holders = contested_[ip];
  holders.insert(owner);
  if (const auto* w = by_ip_.find(ip)) holders.insert("w:" + key_of((*w)->config));
  if (const auto* s = by_vip_.find(ip)) holders.insert("s:" + (*s)->key);
}

// `owner` gives up `addresses`: each is touched, and leaves the index unless another took it.
template <typename Ptr>
void Mesh::release(SharedMap<address, Ptr>& index, const std::vector<address>& addresses, const Ptr& owner,
                   const std::string& tag) {
  for (const auto& ip : addresses) {
    touch_address(unmapped(ip), tag, false);
    if (const auto* at = index.find(unmapped(ip)); at && *at == owner) index.erase(unmapped(ip));
  }
}

void Mesh::put(std::shared_ptr<const WorkloadConfig> config) {
  const std::string key = key_of(*config);
  remove_workload(key);
  const std::string& domain = config->trust_domain.empty() ? trust_domain_ : config->trust_domain;
  const bool here = config->node == node_;
  // A pod with no identity yet is no workload of this node to the proxy: it refuses its
  // connections and connections to it, and no certificate is issued for it.
  const bool local = here && config->origin != WorkloadConfig::Origin::AwaitingXds;
  SpiffeId identity{domain, config->namespace_, config->service_account};
  refuse_repeats(config->ips, "workload " + key);
  auto w = std::make_shared<const Workload>(std::move(config), std::move(identity), local);
  workloads_.put(key, w);
  for (const auto& ip : w->config.ips) {
    touch_address(unmapped(ip), "w:" + key, true);
    by_ip_.put(unmapped(ip), w);
  }
  for (const auto& [service, ports] : w->config.services) {
    edit_keys(members_, service, key, true);
    dirty_services_.insert(service);
  }
  if (const auto* listing = listed_in_.find(key)) dirty_services_.insert((*listing)->begin(), (*listing)->end());
  if (here) here_[key] = w;
}

void Mesh::remove_workload(const std::string& key) {
  const auto* found = workloads_.find(key);
  if (!found) return;
  const WorkloadPtr w = *found;
  release(by_ip_, w->config.ips, w, "w:" + key);
  for (const auto& [service, ports] : w->config.services) {
    edit_keys(members_, service, key, false);
    dirty_services_.insert(service);
  }
  if (const auto* listing = listed_in_.find(key)) dirty_services_.insert((*listing)->begin(), (*listing)->end());
  here_.erase(key);
  workloads_.erase(key);
}

void Mesh::put(std::shared_ptr<const ServiceConfig> config) {
  const std::string key = service_key(*config);
  remove_service(key);
  refuse_repeats(config->vips, "service " + key);
  auto s = std::make_shared<const Service>(std::move(config), key);  // endpoints come in settle()
  services_.put(key, s);
  for (const auto& vip : s->config.vips) {
    touch_address(unmapped(vip), "s:" + key, true);
    by_vip_.put(unmapped(vip), s);
  }
  for (const auto& name : s->config.endpoints) edit_keys(listed_in_, s->config.namespace_ + "/" + name, key, true);
  dirty_services_.insert(key);
}

void Mesh::remove_service(const std::string& key) {
  const auto* found = services_.find(key);
  if (!found) return;
  const ServicePtr s = *found;
  release(by_vip_, s->config.vips, s, "s:" + key);
  for (const auto& name : s->config.endpoints) edit_keys(listed_in_, s->config.namespace_ + "/" + name, key, false);
  services_.erase(key);
}

// `old` again, with its endpoints as they are now.
Mesh::ServicePtr Mesh::build(const Service& old) const {
  auto s = std::make_shared<Service>(old.shared, old.key);
  const ServiceConfig& config = old.config;
  const std::string& key = old.key;
  for (const auto& name : config.endpoints) {
    const Workload* w = workload(config.namespace_ + "/" + name);
    if (!w)
      throw ConfigError("service " + key_of(config) + ": endpoints: no workload '" + name + "' in namespace '" +
                        config.namespace_ + "'");
    if (std::find(s->endpoints.begin(), s->endpoints.end(), w) == s->endpoints.end()) s->endpoints.push_back(w);
  }
  // Workloads that name the service (xDS), by key. A service not (yet) known is no error:
  // istiod may send a workload before its service.
  const size_t listed = s->endpoints.size();
  if (const auto* members = members_.find(key))
    for (const auto& member : **members) {
      const Workload* w = workload(member);
      if (w && std::find(s->endpoints.begin(), s->endpoints.begin() + static_cast<long>(listed), w) ==
                   s->endpoints.begin() + static_cast<long>(listed))
        s->endpoints.push_back(w);
    }
  return s;
}

void Mesh::settle() {
  // Each address the change touched has at most one holder now, and the indexes name it.
  for (const auto& [ip, candidates] : contested_) {
    std::vector<std::string> holders;
    for (const auto& c : candidates) {
      const std::string key = c.substr(2);
      if (c[0] == 'w') {
        if (const Workload* w = workload(key); w && holds(w->config.ips, ip)) holders.push_back(c);
      } else if (const Service* s = service(key); s && holds(s->config.vips, ip)) {
        holders.push_back(c);
      }
    }
    if (holders.size() > 1) {
      const std::string& a = holders[0];
      const std::string& b = holders[1];
      throw ConfigError((b[0] == 'w' ? "workload " : "service ") + b.substr(2) + ": IP " + ip.to_string() +
                        " already belongs to another " + (a[0] == 'w' ? "workload" : "service") + " (" + a.substr(2) +
                        ")");
    }
    by_ip_.erase(ip);
    by_vip_.erase(ip);
    if (holders.empty()) continue;
    if (holders[0][0] == 'w') by_ip_.put(ip, *workloads_.find(holders[0].substr(2)));
    else by_vip_.put(ip, *services_.find(holders[0].substr(2)));
  }
  for (const auto& key : dirty_services_) {
    const auto* old = services_.find(key);
    if (!old) continue;  // named by a workload, not (yet) known
    ServicePtr s = build(**old);
    services_.put(key, s);
    for (const auto& vip : s->config.vips) by_vip_.put(unmapped(vip), s);
  }
  contested_.clear();
  dirty_services_.clear();
}

std::optional<uint16_t> Service::target_port(const Workload& endpoint, uint16_t service_port) const {
  const auto port = config.ports.find(service_port);
  if (port == config.ports.end()) return std::nullopt;
  if (auto own = endpoint.config.services.find(key); own != endpoint.config.services.end())
    if (auto mapped = own->second.find(service_port); mapped != own->second.end()) return mapped->second;
  return port->second;
}

namespace {

// The entry of `key` in a map of shared pointers, or nullptr.
template <typename Map>
auto get(const Map& map, const typename Map::Key& key) -> decltype(map.find(key)->get()) {
  const auto* p = map.find(key);
  return p ? p->get() : nullptr;
}

}  // namespace

const Service* Mesh::service_by_vip(const address& ip) const { return get(by_vip_, unmapped(ip)); }
const Service* Mesh::service(const std::string& key) const { return get(services_, key); }
const Workload* Mesh::by_ip(const address& ip) const { return get(by_ip_, unmapped(ip)); }
const Workload* Mesh::workload(const std::string& key) const { return get(workloads_, key); }

const Service* Mesh::service_for(const Workload& workload, uint16_t target_port) const {
  std::set<std::string> candidates;
  for (const auto& [service, ports] : workload.config.services) candidates.insert(service);
  if (const auto* listing = listed_in_.find(key_of(workload.config))) candidates.insert((*listing)->begin(), (*listing)->end());
  for (const auto& key : candidates) {
    const Service* s = service(key);
    if (!s) continue;
    for (const auto& [service_port, target] : s->config.ports)
      if (s->target_port(workload, service_port) == target_port) return s;
  }
  return nullptr;
}

std::vector<const Workload*> Mesh::local_workloads() const {
  std::vector<const Workload*> out;
  for (const auto& [key, w] : here_)
    if (w->local) out.push_back(w.get());
  return out;
}

std::vector<const Workload*> Mesh::workloads_here() const {
  std::vector<const Workload*> out;
  for (const auto& [key, w] : here_) out.push_back(w.get());
  return out;
}

namespace {

// A SharedMap's values, sorted by key.
template <typename Map>
auto sorted(const Map& map) {
  using Value = decltype(std::declval<typename Map::Value>().get());
  std::vector<std::pair<std::string, Value>> pairs;
  pairs.reserve(map.size());
  map.for_each([&](const std::string& key, const auto& value) { pairs.emplace_back(key, value.get()); });
  std::sort(pairs.begin(), pairs.end());
  std::vector<Value> out;
  out.reserve(pairs.size());
  for (const auto& [key, value] : pairs) out.push_back(value);
  return out;
}

}  // namespace

std::vector<const Workload*> Mesh::workloads() const { return sorted(workloads_); }
std::vector<const Service*> Mesh::services() const { return sorted(services_); }

}  // namespace zmesh
