// istiod's resources into the config model (userspace/xds/translate.cpp) on arbitrary bytes.
// Input: one byte that picks the type (bit 0: Address or Authorization; bits 1-3 all set: the
// Any names the other type), the resource name up to a 0 byte, then the Any's value (the
// serialized message). decode must return or throw ConfigError (anything else is a bug), with
// a message fit for a log (printable); what it returns must be keyed by the resource name, be
// of the type asked for, come out the same twice, and read back from its own JSON unchanged
// (the listings and the runtime layer's file), once what translate sets after the parsers
// (names istiod makes up, a workload's policies) is put aside.
#include <google/protobuf/any.pb.h>
#include <google/protobuf/stubs/logging.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>

#include "translate.h"
#include "zmesh/config.h"
#include "zmesh/json.h"

namespace {

using zmesh::xds::Resource;

// What we decoded, we must read back: a refusal here is a bug too.
template <typename T, typename Parse>
T again(const nlohmann::json& j, Parse parse) {
  try {
    return parse(j);
  } catch (const zmesh::ConfigError&) {
    std::abort();
  }
}

void check_round_trip(const zmesh::WorkloadConfig& w) {
  // The policies that select it are istiod's keys, whose names may be istiod's own
  // ("istio_converted_static_strict"), which the file refuses: set after the parser.
  nlohmann::json j = zmesh::to_json(w);
  j.erase("authorizationPolicies");
  auto back = again<zmesh::WorkloadConfig>(j, [](const nlohmann::json& x) { return zmesh::parse_workload(x, "again", false); });
  back.authorization_policies = w.authorization_policies;
  if (back != w) std::abort();
  if (w.mtls_strict) std::abort();  // STRICT comes as istiod's converted policy, never as the workload's mode
  for (const auto& key : w.authorization_policies)
    if (key.find('/') == std::string::npos || key.find('/') != key.rfind('/')) std::abort();
}

// Names istiod makes up need not be Kubernetes names: translate sets them after the parser, and
// so does the read-back.
template <typename T, typename Parse>
void check_reads_back_with_its_name(const T& x, Parse parse) {
  nlohmann::json j = zmesh::to_json(x);
  j["name"] = "placeholder";
  T back = again<T>(j, parse);
  back.name = x.name;
  if (back != x) std::abort();
}

void check_round_trip(const zmesh::ServiceConfig& s) {
  check_reads_back_with_its_name(s, [](const nlohmann::json& x) { return zmesh::parse_service(x, "again"); });
  if (!s.endpoints.empty()) std::abort();  // xDS: the workloads name their services, not the reverse
}

void check_round_trip(const zmesh::AuthorizationPolicy& p) {
  // A match that sets nothing is istiod's to say (it matches nothing); the file refuses one.
  bool empty_match = false;
  for (const auto& rule : p.rules)
    for (const auto& clause : rule.clauses)
      for (const auto& m : clause.matches) empty_match |= m.empty();
  if (!empty_match)
    check_reads_back_with_its_name(p, [](const nlohmann::json& x) { return zmesh::parse_policy(x, "again"); });
  if (!p.selector.empty()) std::abort();  // xDS selects by the workloads' authorization_policies
  if (p.name.empty() || p.name.find('/') != std::string::npos) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // proto3 logs every string field that is not UTF-8 as it refuses it: noise at this rate.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool authorization = data[0] & 1;
  const bool mismatched = ((data[0] >> 1) & 7) == 7;
  const std::string type_url = authorization ? zmesh::xds::kAuthorizationType : zmesh::xds::kAddressType;
  const char* rest = reinterpret_cast<const char*>(data) + 1;
  const size_t left = size - 1;
  const void* nul = std::memchr(rest, 0, left);
  const size_t name_size = nul ? static_cast<size_t>(static_cast<const char*>(nul) - rest) : left;
  const std::string name(rest, name_size);
  google::protobuf::Any any;
  any.set_type_url(authorization != mismatched ? zmesh::xds::kAuthorizationType : zmesh::xds::kAddressType);
  if (nul) any.set_value(std::string(rest + name_size + 1, left - name_size - 1));

  Resource resource;
  try {  // anything but ConfigError escapes: libFuzzer reports the terminate as a deadly signal
    resource = zmesh::xds::decode(type_url, name, any);
  } catch (const zmesh::ConfigError& e) {
    const std::string why = e.what();
    if (why.empty() || zmesh::printable(why) != why) std::abort();  // raw bytes of istiod's in a log line
    return 0;
  }
  if (mismatched) std::abort();  // an Any of another type is never read
  if (authorization != std::holds_alternative<zmesh::AuthorizationPolicy>(resource)) std::abort();
  if (zmesh::xds::resource_key(resource) != name) std::abort();  // removals and updates find it by its name
  try {
    if (zmesh::xds::decode(type_url, name, any) != resource) std::abort();
  } catch (const zmesh::ConfigError&) {
    std::abort();
  }
  std::visit([](const auto& r) { check_round_trip(r); }, resource);
  return 0;
}
