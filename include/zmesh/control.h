// The control socket: zmeshd's runtime API, what an operator's zmeshctl or a CNI plugin calls.
// A Unix stream socket, root only (mode 0600, and the peer's uid is checked). One request per
// connection: a JSON object on one line, {"command": "...", ...}, answered with one JSON line,
// {"ok": true, "result": ...} or {"ok": false, "error": "what was wrong and where"}.
// Commands: docs/config.md ("Runtime changes") and zmeshctl --help.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "zmesh/config.h"

namespace zmesh::control {

constexpr const char* kDefaultStateDir = "/run/zmesh";
constexpr const char* kSocketName = "control.sock";   // STATE_DIR/control.sock
constexpr const char* kRuntimeName = "runtime.json";  // STATE_DIR/runtime.json: the runtime layer
constexpr size_t kMaxRequestBytes = 1 << 20;
constexpr std::chrono::milliseconds kRequestDeadline{5000};

class ControlError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One request, decoded and checked: what the daemon acts on. Throws ConfigError naming the
// field ("name: expected \"namespace/name\"", "workload.workloadIps[0]: ...").
struct Request {
  enum class Command { Status, Workloads, Services, Policies, Certs, Maps, Enroll, Unenroll, PolicyApply,
                       PolicyDelete, Reload };
  Command command = Command::Status;
  std::optional<WorkloadConfig> workload;   // Enroll (node defaults to `this_node`)
  std::optional<AuthorizationPolicy> policy;  // PolicyApply
  std::string name;                          // Unenroll, PolicyDelete: "namespace/name"
};
Request parse_request(const std::string& line, const std::string& this_node);

// Sends `request`, returns the daemon's "result"; throws ControlError with the daemon's error,
// or with what went wrong reaching it (and the usual cause).
nlohmann::json call(const std::filesystem::path& socket, const nlohmann::json& request,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(15000));

}  // namespace zmesh::control
