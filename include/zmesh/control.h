// The control socket: zmeshd's runtime API, what an operator's zmeshctl or a CNI plugin calls.
// A Unix stream socket, root only (mode 0600, and the peer's uid is checked). One request per
// connection: a JSON object on one line, {"command": "...", ...}, answered with one JSON line,
// {"ok": true, "result": ...} or {"ok": false, "error": "what was wrong and where"}.
// Commands: docs/config.md ("Runtime changes") and zmeshctl --help.
#pragma once

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "zmesh/datapath.h"

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

// Sends `request`, returns the daemon's "result"; throws ControlError with the daemon's error,
// or with what went wrong reaching it (and the usual cause).
nlohmann::json call(const std::filesystem::path& socket, const nlohmann::json& request,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(15000));

// The kernel maps of a daemon, decoded: counters, workloads, destinations, deny rules.
nlohmann::json maps_json(const PinnedMaps& maps);

}  // namespace zmesh::control
