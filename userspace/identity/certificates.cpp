// Certificates (see include/zmesh/certificates.h).
#include "zmesh/certificates.h"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace zmesh {

Certificates::Certificates(CertificateAuthority ca, std::chrono::seconds workload_lifetime)
    : ca_(std::move(ca)), bundle_(ca_.bundle()), lifetime_(workload_lifetime) {}

void Certificates::issue(const SpiffeId& id) {
  Entry entry;
  entry.cert = ca_.issue(id, lifetime_);
  entry.server = make_server_context(entry.cert, bundle_);
  entry.client = make_client_context(entry.cert, bundle_);
  spdlog::info("certificates: issued {} (serial {}, valid {} s)", id.uri(), entry.cert.serial_hex(),
               lifetime_.count());
  entries_[id] = std::move(entry);
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
  return entry(id).server;
}
std::shared_ptr<boost::asio::ssl::context> Certificates::client_context(const SpiffeId& id) const {
  return entry(id).client;
}
const Certificate& Certificates::certificate(const SpiffeId& id) const { return entry(id).cert; }

boost::asio::awaitable<void> Certificates::renew_forever() {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  for (;;) {
    const auto now = std::chrono::system_clock::now();
    for (auto& [id, entry] : entries_) {
      const auto half_life = entry.cert.not_before + (entry.cert.not_after - entry.cert.not_before) / 2;
      if (now < half_life) continue;
      try {
        issue(id);
        ++renewals_;
      } catch (const std::exception& e) {
        // The old certificate stays in use until it expires; try again on the next tick.
        spdlog::error("certificates: renewing {} failed: {}", id.uri(), e.what());
      }
    }
    timer.expires_after(std::chrono::milliseconds(500));
    auto [ec] = co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (ec) co_return;
  }
}

}  // namespace zmesh
