// Certificates: the node's workload certificates and the TLS contexts made from them, one per
// local identity. Issued by the built-in CA when an identity first appears; renewed at half
// life by a coroutine on the daemon's executor. A renewal swaps the contexts: new connections
// use the new certificate, open ones keep theirs (an SSL holds its own reference).
// Single executor; not thread-safe.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <map>
#include <memory>

#include "zmesh/identity.h"

namespace zmesh {

class Certificates {
 public:
  Certificates(CertificateAuthority ca, std::chrono::seconds workload_lifetime);

  // Issues a certificate for `id` unless it has one. Throws IdentityError.
  void ensure(const SpiffeId& id);
  std::shared_ptr<boost::asio::ssl::context> server_context(const SpiffeId& id) const;
  std::shared_ptr<boost::asio::ssl::context> client_context(const SpiffeId& id) const;
  const Certificate& certificate(const SpiffeId& id) const;
  const TrustBundle& bundle() const { return bundle_; }

  // Renews every certificate past half its life; runs until the executor stops.
  boost::asio::awaitable<void> renew_forever();
  uint64_t renewals() const { return renewals_; }

 private:
  struct Entry {
    Certificate cert;
    std::shared_ptr<boost::asio::ssl::context> server, client;
  };
  void issue(const SpiffeId& id);
  const Entry& entry(const SpiffeId& id) const;

  CertificateAuthority ca_;
  TrustBundle bundle_;
  std::chrono::seconds lifetime_;
  std::map<SpiffeId, Entry> entries_;
  uint64_t renewals_ = 0;
};

}  // namespace zmesh
