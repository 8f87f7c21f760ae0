// Certificates: the node's workload certificates and the TLS contexts made from them, one per
// local identity. They come from a source: the built-in CA (issued when an identity first
// appears) or an external CA's files (<dir>/<namespace>/<serviceAccount>/{cert-chain,key}.pem,
// written there by whoever runs that CA). Past half life a coroutine asks the source again: the
// CA issues a new certificate; the files are re-read, and used once they hold a new one.
// A renewal swaps the contexts: new connections use the new certificate, open ones keep theirs
// (an SSL holds its own reference). A rotation (rotate()) replaces the source and the trusted
// roots together. One executor (the daemon's) changes them; the proxy's workers, each on its
// own thread, read the contexts and rotations() (under a shared lock). The source itself runs on a thread of its
// own (one, so that it is never called twice at once): a renewal waits for it without holding
// up the executor — istiod's CA that does not answer stalls no connection — and ensure(),
// which the controller needs answered before it goes on, waits for it in place.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <shared_mutex>

#include "zmesh/identity.h"

namespace zmesh {

class Certificates {
 public:
  using Source = std::function<Certificate(const SpiffeId&)>;
  Certificates(Source source, TrustBundle bundle, std::string source_name);

  // The built-in CA; `extra_roots` are trusted besides its root (CA rotation).
  static Certificates from_ca(CertificateAuthority ca, std::chrono::seconds workload_lifetime,
                              const TrustBundle& extra_roots = {});
  // An external CA's files under `dir`, trusting `bundle`.
  static Certificates from_files(const std::filesystem::path& dir, TrustBundle bundle);

  // Issues a certificate for `id` unless it has one. Throws IdentityError.
  void ensure(const SpiffeId& id);
  std::shared_ptr<boost::asio::ssl::context> server_context(const SpiffeId& id) const;
  std::shared_ptr<boost::asio::ssl::context> client_context(const SpiffeId& id) const;
  // On the daemon's executor only: a renewal replaces what the reference points to.
  const Certificate& certificate(const SpiffeId& id) const;
  const TrustBundle& bundle() const { return bundle_; }
  std::vector<SpiffeId> identities() const;
  const std::string& source_name() const { return source_name_; }

  // A CA rotation: when `fresh` (made from the files again) trusts another set of roots or
  // issues from another root (the built-in CA's files replaced; an external CA's leaves are
  // picked up by renewal instead), every
  // identity is issued again from it and its source and roots replace these. All or nothing: if
  // one identity cannot be issued, nothing changes and the error is thrown. True when rotated.
  // New handshakes use the new material; the caller decides what happens to open connections.
  // `keep` are the identities still local: only they are issued again (an identity whose pod
  // left is dropped, so its missing files cannot block a rotation).
  bool rotate(Certificates fresh, const std::vector<SpiffeId>& keep);
  uint64_t rotations() const {
    std::shared_lock lock(guard_.mutex);
    return rotations_;
  }

  // Renews every certificate past half its life; runs until the executor stops.
  boost::asio::awaitable<void> renew_forever();
  uint64_t renewals() const { return renewals_; }

 private:
  struct Entry {
    Certificate cert;
    std::shared_ptr<boost::asio::ssl::context> server, client;
    // After a failed renewal: when to try again, and the delay that doubles per failure
    // (500 ms, 1 s, ... 60 s; a new certificate starts over).
    std::chrono::steady_clock::time_point retry_at{};
    std::chrono::milliseconds retry_delay{250};
  };
  static constexpr std::chrono::milliseconds kMaxRetryDelay{60000};
  void issue(const SpiffeId& id);
  // Takes `cert` as id's certificate unless it is the one held (an external CA's files not
  // rotated yet). Whether it was new.
  bool install(const SpiffeId& id, Certificate cert);
  const Entry& entry(const SpiffeId& id) const;

  // Held shared by readers on other threads, exclusive by the executor when it changes
  // entries_ or rotations_ (its own reads need no lock: it is the only writer). A moved-from or
  // moved-to Certificates gets a mutex of its own.
  struct Guard {
    mutable std::shared_mutex mutex;
    Guard() = default;
    Guard(Guard&&) noexcept {}
    Guard& operator=(Guard&&) noexcept { return *this; }
  };
  Guard guard_;
  Source source_;
  std::shared_ptr<boost::asio::thread_pool> source_thread_;  // where source_ runs
  TrustBundle bundle_;
  std::string source_name_;
  X509Ptr issuer_;  // the built-in CA's root; none for files
  std::map<SpiffeId, Entry> entries_;
  uint64_t renewals_ = 0;
  uint64_t rotations_ = 0;
};

}  // namespace zmesh
