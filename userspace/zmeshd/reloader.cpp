// Reloads (see reloader.h).
#include "reloader.h"

#include "istiod.h"

#include <spdlog/spdlog.h>

namespace zmesh {

Certificates load_certificates(const DaemonOptions& o, bool at_start) {
  const auto& c = o.certificates;
  const TrustBundle extra_roots = c.trust_bundle.empty() ? TrustBundle() : TrustBundle::load(c.trust_bundle);
  // istiod's CA when zmeshd is fed by istiod and no other CA is named; the roots are the
  // mesh root file's (read again on a rotation, as is this whole source).
  if (o.xds.enabled && c.cert_dir.empty() && c.ca_dir.empty()) {
    return Certificates(xds::istiod().ca(o.xds.istiod, c.ttl), TrustBundle::load(o.xds.istiod.root_cert).with(extra_roots),
                        "istiod");
  }
  if (!c.cert_dir.empty()) {
    if (c.trust_bundle.empty()) throw ConfigError("--cert-dir needs --trust-bundle (the external CA's roots)");
    return Certificates::from_files(c.cert_dir, extra_roots);
  }
  if (c.ca_dir.empty())
    throw ConfigError("the proxy needs certificates: --ca-dir (built-in CA), --cert-dir (external CA) or --xds-address (istiod's CA)");
  auto ca = at_start ? CertificateAuthority::load_or_create(c.ca_dir, o.trust_domain) : CertificateAuthority::load(c.ca_dir);
  return Certificates::from_ca(std::move(ca), c.ttl, extra_roots);
}

Reloader::Reloader(Inputs inputs) : in_(std::move(inputs)), hangup_(in_.io, SIGHUP) {}

void Reloader::start() {
  on_hangup();
  if (!in_.options.config.empty()) {
    config_watch_ = std::make_unique<FileWatch>(in_.io, in_.options.config, [this] {
      try {
        in_.controller.reload_file(false);
      } catch (const std::exception&) {  // logged by the controller; the running state stays
      }
    });
    config_watch_->start();
  }
  if (!in_.certificates) return;
  const auto& c = in_.options.certificates;
  const std::filesystem::path istiod_root = in_.options.xds.enabled ? in_.options.xds.istiod.root_cert : "";
  for (const std::filesystem::path& file :
       {c.trust_bundle, c.ca_dir.empty() ? c.ca_dir : c.ca_dir / "root-cert.pem", istiod_root}) {
    if (file.empty()) continue;
    certificate_watches_.push_back(std::make_unique<FileWatch>(in_.io, file, [this] {
      try {
        rotate_certificates();
      } catch (const std::exception&) {  // logged; a half-written file is read again on its next change
      }
    }));
    certificate_watches_.back()->start();
  }
}

void Reloader::on_hangup() {
  hangup_.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec) return;
    try {
      reload();
    } catch (const std::exception&) {  // logged where it failed; the running state stays
    }
    on_hangup();
  });
}

void Reloader::reload() {
  std::exception_ptr failure;
  try {
    rotate_certificates();
  } catch (...) {
    failure = std::current_exception();
  }
  try {
    in_.controller.reload_file(true);
  } catch (...) {
    if (!failure) failure = std::current_exception();
  }
  if (failure) std::rethrow_exception(failure);
}

// A CA rotation when the roots or the issuing root differ: every HBONE connection is retired,
// so that new streams handshake with the new material.
void Reloader::rotate_certificates() {
  if (!in_.certificates) return;
  try {
    std::vector<SpiffeId> local;
    if (const auto snapshot = in_.state.current())
      for (const auto* w : snapshot->mesh.local_workloads()) local.push_back(w->identity);
    if (in_.certificates->rotate(load_certificates(in_.options, false), local))
      if (Proxy* proxy = in_.proxy()) proxy->retire_connections();
  } catch (const std::exception& e) {
    spdlog::error("certificates: rotation refused, the current certificates stay: {}", e.what());
    throw std::runtime_error(std::string("certificates: ") + e.what());
  }
}

}  // namespace zmesh
