// JSON at zmesh's edges: everything that comes from outside (the config file, control
// requests, CNI input, files and sockets) is parsed with parse_json, and everything zmesh
// writes as JSON goes through json_text. Both are safe against bytes that are not UTF-8: an
// error message never carries the raw bytes, and an output never fails to serialise (a bad
// sequence is written as U+FFFD), so one stray byte cannot break every later reply.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>

namespace zmesh {

class JsonError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses `text` strictly: not JSON, a key twice in one object, or a string that is not UTF-8 is
// a JsonError whose message says where ("duplicate key \"name\" at policies[0]").
nlohmann::json parse_json(std::string_view text);

// The JSON text of `value` (indented when indent >= 0); invalid UTF-8 becomes U+FFFD.
std::string json_text(const nlohmann::json& value, int indent = -1);

// `text` with every invalid UTF-8 sequence replaced by U+FFFD and control characters shown
// as \xNN: fit for a log line, an error message or a JSON string.
std::string printable(std::string_view text);

}  // namespace zmesh
