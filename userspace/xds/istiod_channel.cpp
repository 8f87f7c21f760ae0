// See istiod_channel.h.
#include "istiod_channel.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <fstream>
#include <sstream>
#include <string_view>

namespace zmesh::xds {
namespace {

std::string read_all(const std::filesystem::path& path, const char* what) {
  std::ifstream in(path);
  if (!in) throw IstiodError(std::string(what) + " " + path.string() + ": cannot read it");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string host_of(const std::string& address) {
  if (!address.empty() && address.front() == '[') return address.substr(1, address.find(']') - 1);  // [v6]:port
  return address.substr(0, address.rfind(':'));
}

}  // namespace

std::shared_ptr<grpc::Channel> istiod_channel(const IstiodSettings& settings) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = read_all(settings.root_cert, "--xds-root-cert");
  if (tls.pem_root_certs.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
    throw IstiodError("--xds-root-cert " + settings.root_cert.string() + ": no PEM certificate in it");
  grpc::ChannelArguments args;
  // The name checked in istiod's certificate (gRPC checks it against the SANs).
  args.SetSslTargetNameOverride(settings.server_name.empty() ? host_of(settings.address) : settings.server_name);
  // Reconnects are ours (jittered, 10 ms to 15 s); gRPC's own backoff stays under ours.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 15000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetMaxReceiveMessageSize(256 << 20);  // a full snapshot of a large cluster
  return grpc::CreateCustomChannel(settings.address, grpc::SslCredentials(tls), args);
}

void authenticate(grpc::ClientContext& context, const IstiodSettings& settings) {
  if (!settings.token.empty()) {
    std::string token = read_all(settings.token, "--xds-token");
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
    if (token.empty()) throw IstiodError("--xds-token " + settings.token.string() + ": the file is empty");
    context.AddMetadata("authorization", "Bearer " + token);
  }
  if (!settings.cluster_id.empty()) context.AddMetadata("clusterid", settings.cluster_id);
}

std::string status_code_name(grpc::StatusCode code) {
  static constexpr std::string_view kNames[] = {
      "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  const auto i = static_cast<size_t>(code);
  return i < std::size(kNames) ? std::string(kNames[i]) : "status " + std::to_string(i);
}

}  // namespace zmesh::xds
