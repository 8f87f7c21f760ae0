// SPIFFE ids of workloads: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>,
// parsed strictly (the SPIFFE character sets, nothing else in the URI) and formatted.
#include <algorithm>

#include "openssl_util.h"
#include "zmesh/identity.h"

namespace zmesh {
namespace {

// A SPIFFE path segment: letters, digits, '.', '-', '_', and not "." or ".." (which a URI
// normaliser would fold away, so two spellings of one id could exist).
bool valid_segment(std::string_view s) {
  if (s.empty() || s == "." || s == "..") return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
          c == '_'))
      return false;
  return true;
}

// Splits off the text up to the next '/' (all of it if there is none).
std::string_view next_segment(std::string_view& rest) {
  size_t slash = rest.find('/');
  std::string_view segment = rest.substr(0, slash);
  rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  return segment;
}

}  // namespace

std::string SpiffeId::uri() const { return "spiffe://" + trust_domain + "/ns/" + namespace_ + "/sa/" + service_account; }

std::optional<SpiffeId> SpiffeId::parse(std::string_view uri) {
  constexpr std::string_view kScheme = "spiffe://";
  // The SPIFFE limit; also keeps a hostile SAN from costing anything.
  if (uri.size() > 2048 || !uri.starts_with(kScheme)) return std::nullopt;
  std::string_view rest = uri.substr(kScheme.size());
  // Query, fragment, percent-encoding, port and userinfo all fall outside the character sets
  // checked below, so they need no separate rule.
  const size_t slashes = static_cast<size_t>(std::count(rest.begin(), rest.end(), '/'));
  if (slashes != 4) return std::nullopt;
  SpiffeId id;
  id.trust_domain = std::string(next_segment(rest));
  if (!identity_detail::valid_trust_domain(id.trust_domain)) return std::nullopt;
  if (next_segment(rest) != "ns") return std::nullopt;
  id.namespace_ = std::string(next_segment(rest));
  if (next_segment(rest) != "sa") return std::nullopt;
  id.service_account = std::string(next_segment(rest));
  if (!valid_segment(id.namespace_) || !valid_segment(id.service_account)) return std::nullopt;
  return id;
}

}  // namespace zmesh
