// TLS handshake failures, as the proxy counts and logs them (see context.h).
#include "context.h"

#include <openssl/err.h>
#include <spdlog/spdlog.h>

#include "net.h"

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

std::optional<std::string> source_not_preservable(const asio::ip::address& client, const Workload& pod,
                                                  const tcp::endpoint& target) {
  const auto from = unmapped(client), to = unmapped(target.address());
  if (pod.config.host_veth.empty())
    return "the pod's veth is not known, so its answers could not be kept on the node";
  const bool link_local = from.is_v4() ? (from.to_v4().to_uint() >> 16) == 0xa9fe  // 169.254/16
                                       : from.to_v6().is_link_local();
  const bool broadcast = from.is_v4() && from.to_v4() == asio::ip::address_v4::broadcast();
  if (from.is_unspecified() || from.is_loopback() || from.is_multicast() || link_local || broadcast)
    return from.to_string() + " is no address the pod can answer";
  if (from.is_v4() != to.is_v4())
    return "the client is IPv" + std::string(from.is_v4() ? "4" : "6") + " and the pod is reached over IPv" +
           (to.is_v4() ? "4" : "6");
  if (from == to) return "the client is the pod itself (it would drop a packet from its own address)";
  return std::nullopt;
}

awaitable<tcp::socket> ProxyContext::connect_to_pod(const Workload& pod, const tcp::endpoint& target,
                                                    const asio::ip::address& client, const std::string& tag) {
  const tcp::endpoint to = unmapped(target);
  if (options.preserve_source) {
    if (auto why = source_not_preservable(client, pod, to)) {
      spdlog::info("{} -> {}: connecting from the node's address, not the client's {}: {}", tag, text(to),
                   unmapped(client).to_string(), *why);
    } else {
      try {
        co_return co_await connect(to, options.proxy_mark, options.connect_timeout, unmapped(client));
      } catch (const BindError& e) {
        spdlog::warn("{} -> {}: connecting from the node's address, not the client's {}: {}", tag, text(to),
                     unmapped(client).to_string(), e.what());
      }
    }
  }
  co_return co_await connect(to, options.proxy_mark, options.connect_timeout);
}

}  // namespace zmesh::proxy
