// The built-in CA (its root, the files it lives in, the workload certificates it issues),
// trust bundles, and PEM in and out.
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <system_error>
#include <thread>

#include "openssl_util.h"
#include "zmesh/identity.h"

namespace zmesh {
namespace {

using namespace identity_detail;
using Clock = std::chrono::system_clock;
using NamePtr = std::unique_ptr<X509_NAME, Deleter<X509_NAME_free>>;

// Certificates start a minute in the past so that a peer whose clock is a little behind
// does not see them as not yet valid.
constexpr std::chrono::seconds kClockSkew{60};

PkeyPtr new_p256_key(const std::string& who) {
  PkeyUnique key(EVP_EC_gen("P-256"));
  if (!key) fail(who, "cannot generate a P-256 key");
  return share(std::move(key));
}

// A v3 certificate for `key`, valid [not_before, not_after], with a random positive 128-bit
// serial (random so that no counter has to be kept on disk, and certificates stay distinct
// even across CA restarts).
X509Unique new_certificate(const std::string& who, Clock::time_point not_before, Clock::time_point not_after,
                           EVP_PKEY* key) {
  X509Unique cert(X509_new());
  if (!cert) fail(who, "cannot allocate a certificate");
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1) fail(who, "cannot set the certificate version");
  BnPtr serial(BN_new());
  if (!serial) fail(who, "cannot allocate a serial number");
  do {
    if (BN_rand(serial.get(), 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1) fail(who, "cannot make a serial number");
  } while (BN_is_zero(serial.get()));
  if (!BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())))
    fail(who, "cannot set the serial number");
  if (!ASN1_TIME_set(X509_getm_notBefore(cert.get()), Clock::to_time_t(not_before)) ||
      !ASN1_TIME_set(X509_getm_notAfter(cert.get()), Clock::to_time_t(not_after)))
    fail(who, "cannot set the validity period");
  if (X509_set_pubkey(cert.get(), key) != 1) fail(who, "cannot set the public key");
  return cert;
}

// `value` in openssl.cnf syntax; `issuer` is needed for authorityKeyIdentifier.
void add_extension(X509* cert, X509* issuer, int nid, const char* value, const std::string& who) {
  X509V3_CTX ctx{};
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtensionPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    fail(who, std::string("cannot add the extension ") + OBJ_nid2ln(nid) + " = " + value);
}

// Built by hand rather than from config text, so that nothing in the URI is ever parsed as
// config syntax.
void add_uri_san(X509* cert, const std::string& uri, bool critical, const std::string& who) {
  GeneralNamesPtr names(GENERAL_NAMES_new());
  GeneralNamePtr name(GENERAL_NAME_new());
  Ia5StringPtr text(ASN1_IA5STRING_new());
  if (!names || !name || !text || ASN1_STRING_set(text.get(), uri.data(), static_cast<int>(uri.size())) != 1)
    fail(who, "cannot build the subjectAltName");
  GENERAL_NAME_set0_value(name.get(), GEN_URI, text.release());
  if (sk_GENERAL_NAME_push(names.get(), name.get()) <= 0) fail(who, "cannot build the subjectAltName");
  name.release();
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), critical ? 1 : 0, X509V3_ADD_DEFAULT) != 1)
    fail(who, "cannot add the subjectAltName " + uri);
}

void sign(X509* cert, EVP_PKEY* key, const std::string& who) {
  if (X509_sign(cert, key, EVP_sha256()) <= 0) fail(who, "cannot sign the certificate");
}

// Keeps OpenSSL from asking on the terminal for the pass phrase of an encrypted key.
int no_passphrase(char*, int, int, void*) { return 0; }

BioPtr memory_bio(const std::string& content) {
  BioPtr bio(BIO_new_mem_buf(content.data(), static_cast<int>(content.size())));
  if (!bio) fail("memory BIO", "cannot allocate");
  return bio;
}

X509Ptr read_certificate(const std::filesystem::path& file) {
  const std::string content = read_file(file);
  BioPtr bio = memory_bio(content);
  X509Unique cert(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr));
  if (!cert) fail(file.string(), "no PEM certificate");
  return share(std::move(cert));
}

PkeyPtr read_private_key(const std::filesystem::path& file) {
  const std::string content = read_file(file);
  BioPtr bio = memory_bio(content);
  PkeyUnique key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  if (!key) fail(file.string(), "no unencrypted PEM private key");
  return share(std::move(key));
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(size));
}

bool present(const std::filesystem::path& file) {
  std::error_code ec;
  return std::filesystem::exists(file, ec);
}

void make_directory(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw IdentityError(dir.string() + ": cannot create the directory: " + ec.message());
}

}  // namespace

std::string Certificate::serial_hex() const { return cert ? serial_hex_of(cert.get()) : std::string(); }

TrustBundle TrustBundle::load(const std::filesystem::path& pem_file) {
  ERR_clear_error();
  const std::string content = read_file(pem_file);
  BioPtr bio = memory_bio(content);
  std::vector<X509Ptr> roots;
  for (;;) {
    X509Unique cert(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr));
    if (!cert) {
      // "No start line" is the normal end of the file; anything else is a damaged certificate.
      unsigned long err = ERR_peek_last_error();
      if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        break;
      }
      fail(pem_file.string(), "certificate " + std::to_string(roots.size() + 1) + " cannot be read");
    }
    roots.push_back(share(std::move(cert)));
  }
  if (roots.empty()) throw IdentityError(pem_file.string() + ": no PEM certificate in the file");
  return TrustBundle(std::move(roots));
}

Certificate load_certificate(const std::filesystem::path& chain_file, const std::filesystem::path& key_file) {
  // Every certificate in the chain file, leaf first (TrustBundle::load reads them all).
  const auto certs = TrustBundle::load(chain_file).roots();
  Certificate out;
  out.cert = certs.front();
  out.chain.assign(certs.begin() + 1, certs.end());
  out.key = read_private_key(key_file);
  if (X509_check_private_key(out.cert.get(), out.key.get()) != 1)
    fail(key_file.string(), "the key does not match the certificate in " + chain_file.string());
  out.not_before = to_time_point(X509_get0_notBefore(out.cert.get()));
  out.not_after = to_time_point(X509_get0_notAfter(out.cert.get()));
  return out;
}

TrustBundle TrustBundle::with(const TrustBundle& other) const {
  TrustBundle all;
  for (const auto* list : {&roots_, &other.roots_})
    for (const auto& root : *list)
      if (root && !all.contains(root.get())) all.roots_.push_back(root);
  return all;
}

bool TrustBundle::contains(const X509* root) const {
  return std::any_of(roots_.begin(), roots_.end(), [&](const X509Ptr& r) { return X509_cmp(r.get(), root) == 0; });
}

bool TrustBundle::same_roots(const TrustBundle& other) const {
  auto all_in = [](const TrustBundle& a, const TrustBundle& b) {
    return std::all_of(a.roots_.begin(), a.roots_.end(), [&](const X509Ptr& r) { return b.contains(r.get()); });
  };
  return all_in(*this, other) && all_in(other, *this);
}

std::string to_pem(const X509Ptr& cert) {
  if (!cert) throw IdentityError("to_pem: no certificate");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert.get()) != 1) fail(describe(cert.get()), "cannot write PEM");
  return bio_text(bio.get());
}

std::string to_pem(const PkeyPtr& key) {
  if (!key) throw IdentityError("to_pem: no private key");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PKCS8PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    fail("private key", "cannot write PKCS#8 PEM");
  return bio_text(bio.get());
}

void write_pem_files(const Certificate& cert, const std::filesystem::path& cert_file,
                     const std::filesystem::path& key_file) {
  ERR_clear_error();
  std::string certs = to_pem(cert.cert);
  for (const auto& intermediate : cert.chain) certs += to_pem(intermediate);
  // Key first: whoever watches the certificate file finds the new key in place when it changes.
  write_file_atomically(key_file, to_pem(cert.key), 0600);
  write_file_atomically(cert_file, certs, 0644);
}

CertificateAuthority CertificateAuthority::create(const std::string& trust_domain, std::chrono::seconds lifetime) {
  ERR_clear_error();
  if (!valid_trust_domain(trust_domain))
    throw IdentityError("'" + trust_domain +
                        "' is not a SPIFFE trust domain (lowercase letters, digits, '.', '-', '_')");
  const std::string who = "root CA of spiffe://" + trust_domain;
  if (lifetime <= std::chrono::seconds::zero()) throw IdentityError(who + ": the lifetime must be positive");

  CertificateAuthority ca;
  ca.trust_domain_ = trust_domain;
  ca.key_ = new_p256_key(who);
  const auto now = Clock::now();
  X509Unique root = new_certificate(who, now - kClockSkew, now + lifetime, ca.key_.get());
  NamePtr name(X509_NAME_new());
  auto text = [](const char* s) { return reinterpret_cast<const unsigned char*>(s); };
  if (!name || X509_NAME_add_entry_by_txt(name.get(), "O", MBSTRING_ASC, text("zmesh"), -1, -1, 0) != 1 ||
      X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_ASC, text("zmesh root CA"), -1, -1, 0) != 1 ||
      X509_set_subject_name(root.get(), name.get()) != 1 || X509_set_issuer_name(root.get(), name.get()) != 1)
    fail(who, "cannot set the subject");
  add_extension(root.get(), root.get(), NID_basic_constraints, "critical,CA:TRUE", who);
  add_extension(root.get(), root.get(), NID_key_usage, "critical,keyCertSign,cRLSign", who);
  add_extension(root.get(), root.get(), NID_subject_key_identifier, "hash", who);
  // The root carries its trust domain, so that load() needs nothing but the two files.
  add_uri_san(root.get(), "spiffe://" + trust_domain, false, who);
  sign(root.get(), ca.key_.get(), who);
  ca.root_ = share(std::move(root));
  return ca;
}

CertificateAuthority CertificateAuthority::load(const std::filesystem::path& dir) {
  ERR_clear_error();
  const auto cert_file = dir / kCertFile;
  const auto key_file = dir / kKeyFile;
  CertificateAuthority ca;
  ca.root_ = read_certificate(cert_file);
  ca.key_ = read_private_key(key_file);
  if (X509_check_private_key(ca.root_.get(), ca.key_.get()) != 1)
    fail(key_file.string(), "is not the key of " + cert_file.string());
  if (X509_check_ca(ca.root_.get()) == 0) throw IdentityError(cert_file.string() + ": not a CA certificate");
  constexpr std::string_view kScheme = "spiffe://";
  for (const auto& uri : uri_sans(ca.root_.get())) {
    std::string_view td = std::string_view(uri).substr(std::min(uri.size(), kScheme.size()));
    if (uri.starts_with(kScheme) && valid_trust_domain(td)) {
      ca.trust_domain_ = std::string(td);
      break;
    }
  }
  if (ca.trust_domain_.empty())
    throw IdentityError(cert_file.string() + ": no URI SAN spiffe://<trust-domain> naming the root's trust domain");
  ERR_clear_error();
  return ca;
}

CertificateAuthority CertificateAuthority::load_or_create(const std::filesystem::path& dir,
                                                          const std::string& trust_domain) {
  ERR_clear_error();
  const auto cert_file = dir / kCertFile;
  const auto key_file = dir / kKeyFile;
  make_directory(dir);
  if (!present(cert_file) && !present(key_file)) {
    CertificateAuthority ca = create(trust_domain);
    // The key is linked into place first and the certificate last, so the certificate under
    // its final name means "complete". Whoever links the key first has won the race; link()
    // never replaces, so the loser's files stay temporaries and are removed.
    TempFile key_temp(key_file, to_pem(ca.key_), 0600);
    TempFile cert_temp(cert_file, to_pem(ca.root_), 0644);
    if (key_temp.link_to(key_file)) {
      if (!cert_temp.link_to(cert_file)) {
        ::unlink(key_file.c_str());
        throw IdentityError(cert_file.string() + ": appeared without " + key_file.string() +
                            " while a new root was being saved; not replacing it");
      }
      sync_directory(dir);
      return ca;
    }
  }
  // The key without the certificate is another process between its two links: wait for it.
  for (int i = 0; i < 250 && present(key_file) && !present(cert_file); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (present(key_file) && !present(cert_file))
    throw IdentityError(dir.string() + ": " + kKeyFile + " exists without " + kCertFile +
                        " (an interrupted save?); remove it to make a new root");
  CertificateAuthority ca = load(dir);
  if (ca.trust_domain_ != trust_domain)
    throw IdentityError(cert_file.string() + ": the root is for trust domain '" + ca.trust_domain_ + "', not '" +
                        trust_domain + "'");
  return ca;
}

void CertificateAuthority::save(const std::filesystem::path& dir) const {
  ERR_clear_error();
  make_directory(dir);
  // Key first, as in write_pem_files.
  write_file_atomically(dir / kKeyFile, to_pem(key_), 0600);
  write_file_atomically(dir / kCertFile, to_pem(root_), 0644);
}

Certificate CertificateAuthority::issue(const SpiffeId& id, std::chrono::seconds lifetime) const {
  if (lifetime <= std::chrono::seconds::zero())
    throw IdentityError(id.uri() + ": the certificate lifetime must be positive");
  const auto now = Clock::now();
  return issue(id, now - kClockSkew, now + lifetime);
}

Certificate CertificateAuthority::issue(const SpiffeId& id, std::chrono::system_clock::time_point not_before,
                                        std::chrono::system_clock::time_point not_after) const {
  ERR_clear_error();
  const std::string who = id.uri();
  if (!root_ || !key_) throw IdentityError(who + ": the CA has no root");
  if (id.trust_domain != trust_domain_)
    throw IdentityError(who + ": not in the CA's trust domain '" + trust_domain_ + "'");
  if (auto parsed = SpiffeId::parse(who); !parsed || *parsed != id)
    throw IdentityError("'" + who + "' is not a valid SPIFFE id");
  if (not_after <= not_before) throw IdentityError(who + ": not_after is not later than not_before");

  Certificate out;
  out.key = new_p256_key(who);
  X509Unique leaf = new_certificate(who, not_before, not_after, out.key.get());
  // The subject stays empty: the URI SAN is the whole identity, and no CN can be mistaken for it.
  if (X509_set_issuer_name(leaf.get(), X509_get_subject_name(root_.get())) != 1)
    fail(who, "cannot set the issuer");
  add_extension(leaf.get(), root_.get(), NID_basic_constraints, "critical,CA:FALSE", who);
  add_extension(leaf.get(), root_.get(), NID_key_usage, "critical,digitalSignature,keyEncipherment", who);
  add_extension(leaf.get(), root_.get(), NID_ext_key_usage, "serverAuth,clientAuth", who);
  add_extension(leaf.get(), root_.get(), NID_subject_key_identifier, "hash", who);
  add_extension(leaf.get(), root_.get(), NID_authority_key_identifier, "keyid:always", who);
  // RFC 5280 4.2.1.6: with an empty subject the subjectAltName must be critical.
  add_uri_san(leaf.get(), who, true, who);
  sign(leaf.get(), key_.get(), who);
  out.not_before = to_time_point(X509_get0_notBefore(leaf.get()));
  out.not_after = to_time_point(X509_get0_notAfter(leaf.get()));
  out.cert = share(std::move(leaf));
  return out;
}

}  // namespace zmesh
