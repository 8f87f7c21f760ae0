// istiod as the certificate authority of the node's workloads (issue 16), used as ztunnel uses
// it: for each identity a fresh P-256 key and a CSR that names nothing but that identity, sent
// with the identity to impersonate and the node's own credentials (those of the xDS stream).
// What comes back is checked before anything uses it — the SAN, the key, the chain up to the
// mesh root — because a wrong certificate would only show up later as failed handshakes.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "istiod_channel.h"
#include "zmesh/certificates.h"
#include "zmesh/identity.h"

namespace zmesh::xds {

// issue() blocks for up to `deadline` (one gRPC call): run it where blocking is allowed. It may
// be called from several threads (a gRPC stub is thread-safe; nothing else here changes but
// the atomic failure count).
// The channel is made once, from the roots in settings.root_cert as they are at construction;
// each issue() reads that file again to verify the chain it gets.
class IstiodCa {
 public:
  static constexpr std::chrono::seconds kDefaultValidity = std::chrono::hours(24);
  static constexpr std::chrono::milliseconds kDefaultDeadline = std::chrono::seconds(10);

  // Throws IstiodError when the root file cannot be read or `validity` is not positive
  // (nothing connects yet: the channel connects on the first call).
  explicit IstiodCa(IstiodSettings settings, std::chrono::seconds validity = kDefaultValidity,
                    std::chrono::milliseconds deadline = kDefaultDeadline);

  // A certificate for `id` from one CreateCertificate call. `cert` is the leaf, `chain` the
  // intermediates (leaf first, no self-signed root: peers have the roots). Throws
  // IdentityError naming the identity, istiod's address and what went wrong.
  Certificate issue(const SpiffeId& id);
  // issue() as a Certificates::Source; it shares this CA's channel and counter, so it may
  // outlive this object.
  Certificates::Source source();
  // issue() calls that threw (a metric).
  uint64_t failures() const;
  // Those of every IstiodCa of the process (a CA rotation makes a new one).
  static uint64_t failures_in_process();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace zmesh::xds
