// The control protocol's requests, decoded (see include/zmesh/control.h). Apart from the
// client and the maps so that a fuzzer (fuzz/control_fuzz.cpp) drives exactly this.
#include <algorithm>

#include "zmesh/json.h"
#include "zmesh/control.h"

namespace zmesh::control {
namespace {

std::string key_argument(const nlohmann::json& request) {
  if (!request.contains("name") || !request["name"].is_string())
    throw ConfigError("name: expected \"namespace/name\"");
  const auto name = request["name"].get<std::string>();
  const auto slash = name.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == name.size() || name.find('/', slash + 1) != std::string::npos)
    throw ConfigError("name: expected \"namespace/name\", got \"" + name + "\"");
  return name;
}

const nlohmann::json& object_argument(const nlohmann::json& request, const char* key) {
  if (!request.contains(key) || !request[key].is_object()) throw ConfigError(std::string(key) + ": expected an object");
  return request[key];
}

}  // namespace

Request parse_request(const std::string& line, const std::string& this_node) {
  nlohmann::json request;
  try {
    request = parse_json(line);
  } catch (const JsonError& e) {
    throw ConfigError(std::string("request: ") + e.what());
  }
  if (!request.is_object() || !request.contains("command") || !request["command"].is_string())
    throw ConfigError("command: missing (expected {\"command\": \"status\"} and the like)");
  using C = Request::Command;
  static const std::pair<const char*, C> kCommands[] = {
      {"status", C::Status},   {"workloads", C::Workloads}, {"services", C::Services},
      {"policies", C::Policies}, {"certs", C::Certs},       {"maps", C::Maps},
      {"enroll", C::Enroll},   {"unenroll", C::Unenroll},   {"policy-apply", C::PolicyApply},
      {"policy-delete", C::PolicyDelete}, {"reload", C::Reload}};
  const std::string command = request["command"];
  Request out;
  auto it = std::find_if(std::begin(kCommands), std::end(kCommands), [&](const auto& c) { return command == c.first; });
  if (it == std::end(kCommands))
    throw ConfigError("command: unknown '" + command +
                      "' (status, workloads, services, policies, certs, maps, enroll, unenroll, policy-apply, "
                      "policy-delete, reload)");
  out.command = it->second;
  if (out.command == C::Enroll) {
    nlohmann::json workload = object_argument(request, "workload");
    if (!workload.contains("node")) workload["node"] = this_node;
    out.workload = parse_workload(workload, "workload");
  }
  if (out.command == C::PolicyApply) out.policy = parse_policy(object_argument(request, "policy"), "policy");
  if (out.command == C::Unenroll || out.command == C::PolicyDelete) out.name = key_argument(request);
  return out;
}

}  // namespace zmesh::control
