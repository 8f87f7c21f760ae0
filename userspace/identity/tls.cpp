// The HBONE TLS contexts (TLS 1.3 only, ALPN h2 only, mutual authentication against a trust
// bundle) and the peer's SPIFFE id after the handshake.
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>

#include "openssl_util.h"
#include "zmesh/identity.h"

namespace zmesh {
namespace {

using namespace identity_detail;

constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};

bool is_h2(const unsigned char* proto, unsigned len) { return len == 2 && std::memcmp(proto, "h2", 2) == 0; }

// Server: picks h2 from the client's list; anything else ends the handshake with
// no_application_protocol.
int select_h2(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
              void*) {
  for (unsigned i = 0; i < inlen;) {
    const unsigned len = in[i];
    if (i + 1 + len > inlen) break;  // malformed list
    if (is_h2(in + i + 1, len)) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  ERR_raise_data(ERR_LIB_SSL, SSL_R_NO_APPLICATION_PROTOCOL, "the client did not offer h2");
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

// Server: OpenSSL calls the ALPN select callback only when the client sent the extension, so
// a client without ALPN would get through; it is stopped here instead.
int require_alpn(SSL* ssl, int* alert, void*) {
  const unsigned char* ext = nullptr;
  size_t len = 0;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext, &len) == 1)
    return SSL_CLIENT_HELLO_SUCCESS;
  *alert = SSL_AD_NO_APPLICATION_PROTOCOL;
  ERR_raise_data(ERR_LIB_SSL, SSL_R_NO_APPLICATION_PROTOCOL, "the client offered no ALPN (h2 is required)");
  return SSL_CLIENT_HELLO_ERROR;
}

// Client: a server that ignores ALPN completes the handshake without choosing a protocol.
// In TLS 1.3 the server's choice (EncryptedExtensions) arrives before its certificate, so the
// chain check is the last point at which the handshake can still be refused.
int verify_chain_then_h2(X509_STORE_CTX* store_ctx, void*) {
  if (X509_verify_cert(store_ctx) != 1) return 0;
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  const unsigned char* proto = nullptr;
  unsigned len = 0;
  if (ssl) SSL_get0_alpn_selected(ssl, &proto, &len);
  if (proto && is_h2(proto, len)) return 1;
  X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_APPLICATION_VERIFICATION);
  ERR_raise_data(ERR_LIB_SSL, SSL_R_NO_APPLICATION_PROTOCOL, "the server did not select h2");
  return 0;
}

std::shared_ptr<boost::asio::ssl::context> make_context(const Certificate& cert, const TrustBundle& bundle,
                                                       bool server) {
  ERR_clear_error();
  if (!cert.cert || !cert.key) throw IdentityError("TLS context: the certificate or its key is missing");
  const std::string who = std::string(server ? "server" : "client") + " TLS context for " + describe(cert.cert.get());
  if (bundle.roots().empty()) throw IdentityError(who + ": the trust bundle has no roots");

  SslCtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
  if (!ctx) fail(who, "cannot allocate");
  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION) != 1)
    fail(who, "cannot restrict the protocol to TLS 1.3");
  // No resumption: every connection proves its identity with a full handshake, and no
  // session state has to be shared or expired.
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  if (server && SSL_CTX_set_num_tickets(ctx.get(), 0) != 1) fail(who, "cannot turn session tickets off");
  // Send exactly the leaf and cert.chain; never chains built from the trust store.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_NO_AUTO_CHAIN);

  if (SSL_CTX_use_certificate(ctx.get(), cert.cert.get()) != 1) fail(who, "cannot use the certificate");
  if (SSL_CTX_use_PrivateKey(ctx.get(), cert.key.get()) != 1) fail(who, "cannot use the private key");
  if (SSL_CTX_check_private_key(ctx.get()) != 1) fail(who, "the private key does not match the certificate");
  for (const auto& intermediate : cert.chain)
    if (!intermediate || SSL_CTX_add1_chain_cert(ctx.get(), intermediate.get()) != 1)
      fail(who, "cannot add an intermediate certificate");

  // Only the bundle's roots: never the system's CAs.
  StorePtr store(X509_STORE_new());
  if (!store) fail(who, "cannot allocate the trust store");
  for (const auto& root : bundle.roots())
    if (!root || X509_STORE_add_cert(store.get(), root.get()) != 1) fail(who, "cannot add a trusted root");
  SSL_CTX_set_cert_store(ctx.get(), store.release());
  // No hostname check: HBONE peers are named by SPIFFE id, which the caller compares.
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);

  if (server) {
    SSL_CTX_set_client_hello_cb(ctx.get(), require_alpn, nullptr);
    SSL_CTX_set_alpn_select_cb(ctx.get(), select_h2, nullptr);
    static constexpr unsigned char kSessionContext[] = "zmesh-hbone";
    if (SSL_CTX_set_session_id_context(ctx.get(), kSessionContext, sizeof kSessionContext - 1) != 1)
      fail(who, "cannot set the session id context");
  } else {
    // Unlike most of OpenSSL, 0 is success here.
    if (SSL_CTX_set_alpn_protos(ctx.get(), kAlpnH2, sizeof kAlpnH2) != 0) fail(who, "cannot set ALPN h2");
    SSL_CTX_set_cert_verify_callback(ctx.get(), verify_chain_then_h2, nullptr);
  }

  // The Asio context owns the SSL_CTX from here. Its destructor frees whatever it finds in the
  // SSL_CTX's app data and password userdata as its own objects, so neither is used above.
  auto result = std::make_shared<boost::asio::ssl::context>(ctx.get());
  ctx.release();
  return result;
}

}  // namespace

std::shared_ptr<boost::asio::ssl::context> make_server_context(const Certificate& cert, const TrustBundle& bundle) {
  return make_context(cert, bundle, true);
}

std::shared_ptr<boost::asio::ssl::context> make_client_context(const Certificate& cert, const TrustBundle& bundle) {
  return make_context(cert, bundle, false);
}

namespace {

// The trust domain a root vouches for: its own spiffe://<td> URI SAN (the built-in CA writes
// one, as SPIFFE bundles name each root's trust domain); a root without one vouches for ours.
std::string trust_domain_of_root(X509* root, const std::string& ours) {
  constexpr std::string_view kScheme = "spiffe://";
  for (const auto& uri : uri_sans(root)) {
    const std::string_view td = std::string_view(uri).substr(std::min(uri.size(), kScheme.size()));
    if (uri.starts_with(kScheme) && valid_trust_domain(td)) return std::string(td);
  }
  return ours;
}

// Our own trust domain: that of the certificate this side presents.
std::string own_trust_domain(SSL* ssl) {
  if (X509* own = SSL_get_certificate(ssl))
    for (const auto& uri : uri_sans(own))
      if (auto id = SpiffeId::parse(uri)) return id->trust_domain;
  return {};
}

}  // namespace

std::variant<SpiffeId, std::string> verified_peer_identity(SSL* ssl) {
  if (!ssl) return std::string("no TLS connection");
  if (long result = SSL_get_verify_result(ssl); result != X509_V_OK)
    return std::string("verification failed: ") + X509_verify_cert_error_string(result);
  X509Unique cert(SSL_get1_peer_certificate(ssl));
  if (!cert) return std::string("no certificate");
  // X.509-SVID: a leaf is never a CA (cA false, no keyCertSign or cRLSign).
  const uint32_t flags = X509_get_extension_flags(cert.get());
  if ((flags & EXFLAG_CA) ||
      ((flags & EXFLAG_KUSAGE) && (X509_get_key_usage(cert.get()) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN))))
    return std::string("certificate is a CA certificate (CA:TRUE or keyCertSign), which an X.509-SVID leaf never is");
  std::vector<std::string> spiffe;
  for (auto& uri : uri_sans(cert.get()))
    if (uri.starts_with("spiffe://")) spiffe.push_back(std::move(uri));
  if (spiffe.empty()) return std::string("certificate has no spiffe:// URI SAN");
  if (spiffe.size() > 1) return std::string("certificate has more than one spiffe:// URI SAN");
  const auto id = SpiffeId::parse(spiffe.front());
  if (!id) return "certificate's URI SAN " + spiffe.front() + " is not spiffe://<trust-domain>/ns/<namespace>/sa/<account>";
  // Each root speaks for its own trust domain only: a root of cluster.local cannot make an
  // identity of evil.org (nor one of evil.org a cluster.local identity).
  STACK_OF(X509)* chain = SSL_get0_verified_chain(ssl);
  const int depth = chain ? sk_X509_num(chain) : 0;
  if (depth == 0) return std::string("no verified chain");
  const std::string root_td = trust_domain_of_root(sk_X509_value(chain, depth - 1), own_trust_domain(ssl));
  if (id->trust_domain != root_td)
    return "certificate's trust domain " + id->trust_domain + " is not that of the root it chains to (" + root_td + ")";
  return *id;
}

}  // namespace zmesh
