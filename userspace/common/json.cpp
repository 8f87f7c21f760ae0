// Strict JSON in, safe JSON out (see include/zmesh/json.h).
#include "zmesh/json.h"

#include <set>
#include <vector>

namespace zmesh {
namespace {

using nlohmann::json;

// Length of the valid UTF-8 sequence at text[i], 0 when it is not one (RFC 3629: no
// overlongs, no surrogates, nothing above U+10FFFF).
size_t utf8_length(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c == 0xE0) n = 3, lo = 0xA0;
  else if (c >= 0xE1 && c <= 0xEC) n = 3;
  else if (c == 0xED) n = 3, hi = 0x9F;
  else if (c >= 0xEE && c <= 0xEF) n = 3;
  else if (c == 0xF0) n = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) n = 4;
  else if (c == 0xF4) n = 4, hi = 0x8F;
  else return 0;
  if (i + n > text.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  return n;
}

// Where the parser is, for messages: "policies[0].rules[1]".
class PathTracker {
 public:
  bool on(int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        enter(false);
        break;
      case json::parse_event_t::array_start:
        enter(true);
        break;
      case json::parse_event_t::key: {
        auto& frame = frames_.back();
        frame.key = parsed.get<std::string>();
        if (!frame.keys.insert(frame.key).second)
          throw JsonError("duplicate key \"" + printable(frame.key) + "\" in " + where(frames_.size() - 1) +
                          " (JSON allows it, but only one value would count)");
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        frames_.pop_back();
        completed();
        break;
      case json::parse_event_t::value:
        completed();
        break;
    }
    return true;
  }

 private:
  struct Frame {
    bool array;
    size_t index = 0;
    std::string key;
    std::set<std::string> keys;
  };
  void enter(bool array) { frames_.push_back({array, 0, {}, {}}); }
  void completed() {
    if (!frames_.empty() && frames_.back().array) ++frames_.back().index;
  }
  // The path of the container at frames_[depth].
  std::string where(size_t depth) const {
    std::string out;
    for (size_t i = 0; i < depth; ++i) {
      const auto& f = frames_[i];
      if (f.array) out += "[" + std::to_string(f.index) + "]";
      else out += (out.empty() ? "" : ".") + printable(f.key);
    }
    return out.empty() ? "the top level" : out;
  }
  std::vector<Frame> frames_;
};

}  // namespace

json parse_json(std::string_view text) {
  PathTracker path;
  try {
    return json::parse(text.begin(), text.end(),
                       [&](int depth, json::parse_event_t event, json& parsed) { return path.on(depth, event, parsed); });
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number too big
    throw JsonError("not valid JSON: " + printable(e.what()));
  }
}

std::string json_text(const json& value, int indent) {
  return value.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8_length(text, i);
    const auto c = static_cast<unsigned char>(text[i]);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
    } else if (n == 1 && (c < 0x20 || c == 0x7F) && c != '\n' && c != '\t') {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

}  // namespace zmesh
