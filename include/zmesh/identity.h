// Workload identities and the TLS they travel in: SPIFFE X.509 SVIDs
// (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, ECDSA P-256, URI SAN, no CN),
// the built-in CA of a standalone mesh, trust bundles with one or more roots (CA rotation),
// and the TLS 1.3 contexts (ALPN h2, mutual authentication) that HBONE uses.
// Everything here is plain OpenSSL 3 under RAII; errors are IdentityError with the file or the
// identity and the reason.
#pragma once

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace zmesh {

class IdentityError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct SpiffeId {
  std::string trust_domain;
  std::string namespace_;
  std::string service_account;

  std::string uri() const;  // "spiffe://td/ns/N/sa/S"
  // nullopt unless `uri` is exactly spiffe://<td>/ns/<ns>/sa/<sa> with non-empty parts.
  static std::optional<SpiffeId> parse(std::string_view uri);
  auto operator<=>(const SpiffeId&) const = default;
};

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using X509Ptr = std::shared_ptr<X509>;      // made with X509Free
using PkeyPtr = std::shared_ptr<EVP_PKEY>;  // made with PkeyFree

// A workload's certificate and private key (and any intermediates up to the root).
struct Certificate {
  X509Ptr cert;
  PkeyPtr key;
  std::vector<X509Ptr> chain;  // intermediates, leaf first; empty for a leaf signed by the root
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point not_after;
  std::string serial_hex() const;
};

// One or more trusted roots. Several roots = CA rotation: peers chaining to any are trusted.
class TrustBundle {
 public:
  TrustBundle() = default;
  explicit TrustBundle(std::vector<X509Ptr> roots) : roots_(std::move(roots)) {}
  static TrustBundle load(const std::filesystem::path& pem_file);  // every certificate in the file
  const std::vector<X509Ptr>& roots() const { return roots_; }
  TrustBundle with(const TrustBundle& other) const;  // union (rotation: old + new roots)
  bool contains(const X509* root) const;
  bool same_roots(const TrustBundle& other) const;  // the same set, in any order

 private:
  std::vector<X509Ptr> roots_;
};

// The built-in CA: a self-signed ECDSA P-256 root that issues workload certificates.
class CertificateAuthority {
 public:
  static constexpr std::chrono::hours kRootLifetime{24 * 365 * 10};
  static constexpr const char* kCertFile = "root-cert.pem";  // 0644
  static constexpr const char* kKeyFile = "root-key.pem";    // 0600

  static CertificateAuthority create(const std::string& trust_domain,
                                     std::chrono::seconds lifetime = kRootLifetime);
  // Loads <dir>/root-cert.pem and <dir>/root-key.pem; the trust domain is read from the root
  // (a URI SAN spiffe://<td>, which create() writes).
  static CertificateAuthority load(const std::filesystem::path& dir);
  // Loads, or creates and saves when neither file exists. Two processes racing here end with
  // one root (the files are written to temporaries and linked into place without replacing).
  static CertificateAuthority load_or_create(const std::filesystem::path& dir, const std::string& trust_domain);
  void save(const std::filesystem::path& dir) const;

  // A new key and certificate for `id` (its trust domain must be this CA's), valid
  // [now - 1 min, now + lifetime]. The explicit overload is for tests (expired certificates).
  Certificate issue(const SpiffeId& id, std::chrono::seconds lifetime) const;
  Certificate issue(const SpiffeId& id, std::chrono::system_clock::time_point not_before,
                    std::chrono::system_clock::time_point not_after) const;

  const std::string& trust_domain() const { return trust_domain_; }
  const X509Ptr& root() const { return root_; }
  TrustBundle bundle() const { return TrustBundle({root_}); }

 private:
  std::string trust_domain_;
  X509Ptr root_;
  PkeyPtr key_;
};

// A workload certificate from an external CA: `chain_file` holds the leaf then any
// intermediates, `key_file` its private key. Throws IdentityError naming the file and the cause
// (unreadable, no certificate, key does not match).
Certificate load_certificate(const std::filesystem::path& chain_file, const std::filesystem::path& key_file);

// PEM text of a certificate or a private key (PKCS#8), for files and tools.
std::string to_pem(const X509Ptr& cert);
std::string to_pem(const PkeyPtr& key);
void write_pem_files(const Certificate& cert, const std::filesystem::path& cert_file,
                     const std::filesystem::path& key_file);  // cert (+chain) 0644, key 0600

// TLS 1.3 only, ALPN "h2" only (a peer without it fails the handshake), presenting `cert`,
// verifying the peer's chain against `bundle` (a certificate is required from clients too).
// The peer's SPIFFE identity is checked by the caller after the handshake
// (verified_peer_identity), because which identity is expected depends on the connection.
std::shared_ptr<boost::asio::ssl::context> make_server_context(const Certificate& cert, const TrustBundle& bundle);
std::shared_ptr<boost::asio::ssl::context> make_client_context(const Certificate& cert, const TrustBundle& bundle);

// After a successful handshake: the peer's SPIFFE id from its verified leaf's URI SAN, or a
// sentence saying why there is none ("no certificate", "certificate has no spiffe:// URI
// SAN", "verification failed: certificate has expired", ...).
std::variant<SpiffeId, std::string> verified_peer_identity(SSL* ssl);

}  // namespace zmesh
