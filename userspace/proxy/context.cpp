// TLS handshake failures, as the proxy counts and logs them (see context.h).
#include "context.h"

#include <openssl/err.h>

namespace zmesh::proxy {

HandshakeFailure handshake_failure(const error_code& ec, SSL* ssl) {
  if (ec == asio::error::timed_out) return HandshakeFailure::Timeout;
  if (SSL_get_verify_result(ssl) != X509_V_OK) return HandshakeFailure::Certificate;
  if (ec.category() == asio::error::get_ssl_category() &&
      ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
    return HandshakeFailure::Certificate;  // a client without one
  return HandshakeFailure::Protocol;
}

std::string verification_failure(SSL* ssl) {
  if (SSL_get_verify_result(ssl) == X509_V_OK) return {};
  const auto peer = verified_peer_identity(ssl);
  const auto* why = std::get_if<std::string>(&peer);
  return why ? " (peer certificate: " + *why + ")" : std::string();
}

}  // namespace zmesh::proxy
