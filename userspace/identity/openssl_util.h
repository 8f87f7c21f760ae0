// Internals of the identity module: owners for OpenSSL objects, the error text that goes into
// every IdentityError, whole-file reads and crash-safe writes, and the SAN/time conversions
// that the CA and the TLS code share. userspace/identity includes this, and istiod's CA client
// (userspace/xds/ca_client.cpp), which checks what istiod signs with the same helpers.
#pragma once

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "zmesh/identity.h"

namespace zmesh::identity_detail {

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using X509Unique = std::unique_ptr<X509, Deleter<X509_free>>;
using PkeyUnique = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using ExtensionPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;
using GeneralNamePtr = std::unique_ptr<GENERAL_NAME, Deleter<GENERAL_NAME_free>>;
using Ia5StringPtr = std::unique_ptr<ASN1_IA5STRING, Deleter<ASN1_IA5STRING_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX_free>>;
// OPENSSL_free is a macro (it records file and line), so it cannot be a template argument.
struct OpensslFree {
  void operator()(void* p) const { OPENSSL_free(p); }
};
using OpensslString = std::unique_ptr<char, OpensslFree>;

// The shared owners of the public interface, always with the deleters it names.
inline X509Ptr share(X509Unique cert) { return X509Ptr(cert.release(), X509Free()); }
inline PkeyPtr share(PkeyUnique key) { return PkeyPtr(key.release(), PkeyFree()); }

// The first queued OpenSSL error as text ("" when the queue is empty); the queue is cleared,
// so that a later message never shows a stale cause.
std::string openssl_error();
// Throws IdentityError "<where>: <what>[: <openssl error>]".
[[noreturn]] void fail(const std::string& where, const std::string& what);

// SPIFFE trust domain syntax: lowercase letters, digits, '.', '-', '_'; 1..255 bytes.
bool valid_trust_domain(std::string_view td);

// The whole file, or IdentityError "<path>: cannot read: <errno text>".
std::string read_file(const std::filesystem::path& path);

// A complete copy of `content` under a unique temporary name next to `target`, with exactly
// `mode` (not reduced by the umask), flushed to disk. Removed on destruction unless it was
// renamed away; a link to it survives, which is how load_or_create publishes files.
class TempFile {
 public:
  TempFile(const std::filesystem::path& target, std::string_view content, mode_t mode);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  // link(2) to `target`: false if `target` already exists (never replaces it).
  bool link_to(const std::filesystem::path& target) const;
  // rename(2) onto `target`, replacing it.
  void rename_to(const std::filesystem::path& target);

 private:
  std::filesystem::path path_;
  bool renamed_ = false;
};
// Atomically replaces `target` with `content` (a reader sees the old file or the new one).
void write_file_atomically(const std::filesystem::path& target, std::string_view content, mode_t mode);
// fsync of a directory, so that links and renames in it survive a crash. Best effort.
void sync_directory(const std::filesystem::path& dir);

// Every URI in the certificate's subjectAltName, in order.
std::vector<std::string> uri_sans(const X509* cert);
// The serial number as uppercase hex, two digits a byte (as `openssl x509 -serial` prints it).
std::string serial_hex_of(const X509* cert);
// How a certificate is named in error messages: its first URI SAN, else "certificate <serial>".
std::string describe(const X509* cert);

std::chrono::system_clock::time_point to_time_point(const ASN1_TIME* time);

}  // namespace zmesh::identity_detail
