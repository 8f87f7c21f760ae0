// Certificates (see include/zmesh/certificates.h).
#include "zmesh/certificates.h"

#include <spdlog/spdlog.h>

#include <future>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace zmesh {

Certificates::Certificates(Source source, TrustBundle bundle, std::string source_name)
    : source_(std::move(source)),
      source_thread_(std::make_shared<boost::asio::thread_pool>(1)),
      bundle_(std::move(bundle)),
      source_name_(std::move(source_name)) {}

Certificates Certificates::from_ca(CertificateAuthority ca, std::chrono::seconds workload_lifetime,
                                   const TrustBundle& extra_roots) {
  TrustBundle bundle = ca.bundle().with(extra_roots);
  auto shared = std::make_shared<CertificateAuthority>(std::move(ca));
  Certificates out([shared, workload_lifetime](const SpiffeId& id) { return shared->issue(id, workload_lifetime); },
                   std::move(bundle), "the built-in CA");
  out.issuer_ = shared->root();
  return out;
}

Certificates Certificates::from_files(const std::filesystem::path& dir, TrustBundle bundle) {
  return Certificates(
      [dir](const SpiffeId& id) {
        const auto base = dir / id.namespace_ / id.service_account;
        return load_certificate(base / "cert-chain.pem", base / "key.pem");
      },
      std::move(bundle), "files in " + dir.string());
}

void Certificates::issue(const SpiffeId& id) {
  std::packaged_task<Certificate()> fetch([source = source_, id] { return source(id); });
  auto result = fetch.get_future();
  boost::asio::post(*source_thread_, std::move(fetch));
  install(id, result.get());
}

bool Certificates::install(const SpiffeId& id, Certificate cert) {
  if (auto it = entries_.find(id); it != entries_.end() && it->second.cert.serial_hex() == cert.serial_hex())
    return false;  // the source has nothing newer yet (an external CA's files not rotated)
  Entry entry;
  entry.cert = std::move(cert);
  entry.server = make_server_context(entry.cert, bundle_);
  entry.client = make_client_context(entry.cert, bundle_);
  const auto valid = std::chrono::duration_cast<std::chrono::seconds>(entry.cert.not_after - entry.cert.not_before);
  spdlog::info("certificates: issued {} from {} (serial {}, valid {} s)", id.uri(), source_name_,
               entry.cert.serial_hex(), valid.count());
  std::unique_lock lock(guard_.mutex);
  entries_[id] = std::move(entry);
  return true;
}

void Certificates::ensure(const SpiffeId& id) {
  if (!entries_.contains(id)) issue(id);
}

const Certificates::Entry& Certificates::entry(const SpiffeId& id) const {
  auto it = entries_.find(id);
  if (it == entries_.end()) throw IdentityError("no certificate for " + id.uri() + " on this node");
  return it->second;
}

std::shared_ptr<boost::asio::ssl::context> Certificates::server_context(const SpiffeId& id) const {
  std::shared_lock lock(guard_.mutex);
  return entry(id).server;
}
std::shared_ptr<boost::asio::ssl::context> Certificates::client_context(const SpiffeId& id) const {
  std::shared_lock lock(guard_.mutex);
  return entry(id).client;
}
const Certificate& Certificates::certificate(const SpiffeId& id) const { return entry(id).cert; }

bool Certificates::rotate(Certificates fresh, const std::vector<SpiffeId>& keep) {
  const bool same_issuer = (!fresh.issuer_ && !issuer_) ||
                           (fresh.issuer_ && issuer_ && X509_cmp(fresh.issuer_.get(), issuer_.get()) == 0);
  if (fresh.bundle_.same_roots(bundle_) && same_issuer) return false;
  for (const auto& id : keep) fresh.issue(id);
  spdlog::info("certificates: rotated to {} ({} trusted roots, was {}); {} identities issued again",
               fresh.source_name_, fresh.bundle_.roots().size(), bundle_.roots().size(), fresh.entries_.size());
  source_ = std::move(fresh.source_);
  bundle_ = std::move(fresh.bundle_);
  source_name_ = std::move(fresh.source_name_);
  issuer_ = std::move(fresh.issuer_);
  std::unique_lock lock(guard_.mutex);
  entries_ = std::move(fresh.entries_);
  ++rotations_;
  return true;
}

boost::asio::awaitable<void> Certificates::renew_forever() {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  for (;;) {
    const auto now = std::chrono::system_clock::now();
    std::vector<SpiffeId> due;
    for (const auto& [id, entry] : entries_) {
      const auto half_life = entry.cert.not_before + (entry.cert.not_after - entry.cert.not_before) / 2;
      if (now >= half_life && std::chrono::steady_clock::now() >= entry.retry_at) due.push_back(id);
    }
    const uint64_t rotations = rotations_;
    for (const auto& id : due) {
      // A rotation while this round waited issued everything again from another source: the
      // rest of the round is not wanted (the next one looks again).
      if (rotations != rotations_) break;
      try {
        // On the source's thread: the executor serves connections meanwhile. (A named function
        // object: GCC 12 destroys a lambda temporary inside a co_await expression twice.)
        auto fetch = [source = source_, id]() -> boost::asio::awaitable<Certificate> { co_return source(id); };
        Certificate cert = co_await boost::asio::co_spawn(*source_thread_, std::move(fetch), boost::asio::use_awaitable);
        // Meanwhile a rotation may have issued everything again from another source, or the
        // identity may have gone: then this certificate is not wanted.
        if (rotations == rotations_ && entries_.contains(id) && install(id, std::move(cert))) ++renewals_;
      } catch (const std::exception& e) {
        // The old certificate stays in use until it expires; try again after a backoff that
        // doubles per failure (a CA that is down is not asked twice a second by every node).
        auto it = entries_.find(id);
        if (rotations != rotations_ || it == entries_.end()) continue;  // the old source's failure
        auto& entry = it->second;
        entry.retry_delay = std::min(kMaxRetryDelay, entry.retry_delay * 2);
        entry.retry_at = std::chrono::steady_clock::now() + entry.retry_delay;
        spdlog::error("certificates: renewing {} failed, next try in {} ms: {}", id.uri(), entry.retry_delay.count(),
                      e.what());
      }
    }
    timer.expires_after(std::chrono::milliseconds(500));
    auto [ec] = co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (ec) co_return;
  }
}

std::vector<SpiffeId> Certificates::identities() const {
  std::vector<SpiffeId> out;
  for (const auto& [id, entry] : entries_) out.push_back(id);
  return out;
}

}  // namespace zmesh
