// See xds_client.h. The protocol: Envoy's delta xDS (envoy/service/discovery/v3/discovery.proto)
// as istiod serves it to ztunnel.
#include "xds_client.h"

#include <google/protobuf/struct.pb.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <random>

#include "xds.grpc.pb.h"
#include "zmesh/json.h"

namespace zmesh::xds {
namespace {

namespace discovery = envoy::service::discovery::v3;
constexpr std::chrono::milliseconds kFirstBackoff{10}, kMaxBackoff{15000};
const char* const kTypes[] = {kAddressType, kAuthorizationType};  // Address first, as ztunnel

std::string short_type(const std::string& type_url) { return type_url.substr(type_url.rfind('/') + 1); }

}  // namespace

XdsClient::XdsClient(IstiodSettings settings, NodeIdentity node, Apply apply)
    : settings_(std::move(settings)), node_(std::move(node)), apply_(std::move(apply)) {}

XdsClient::~XdsClient() { stop(); }

std::string XdsClient::node_id(const NodeIdentity& n) {
  return "ztunnel~" + n.instance_ip + "~" + n.pod_name + "." + n.pod_namespace + "~" + n.pod_namespace +
         ".svc.cluster.local";
}

void XdsClient::start() {
  thread_ = std::thread([this] { run(); });
}

void XdsClient::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    if (context_) context_->TryCancel();
  }
  wake_.notify_all();
  thread_.join();
}

TypeStats& XdsClient::stats_of(const std::string& type_url) {
  return type_url == kAuthorizationType ? authorization_ : address_;
}
const TypeStats& XdsClient::stats(const std::string& type_url) const {
  return type_url == kAuthorizationType ? authorization_ : address_;
}

std::string XdsClient::last_error() const {
  std::lock_guard lock(mutex_);
  return last_error_;
}
void XdsClient::set_error(const std::string& error) {
  std::lock_guard lock(mutex_);
  last_error_ = error;
}

void XdsClient::run() {
  std::mt19937_64 random(std::random_device{}());
  auto backoff = kFirstBackoff;
  while (!stopping_) {
    if (stream_once()) backoff = kFirstBackoff;
    if (stopping_) break;
    // Full jitter over [backoff/2, backoff]: nodes that lost istiod together do not return together.
    const auto wait = std::chrono::milliseconds(
        std::uniform_int_distribution<int64_t>(backoff.count() / 2, backoff.count())(random));
    spdlog::info("xds: reconnecting to {} in {} ms", settings_.address, wait.count());
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, wait, [&] { return stopping_.load(); });
    backoff = std::min(kMaxBackoff, backoff * 2);
  }
}

bool XdsClient::stream_once() {
  bool got_response = false;
  std::shared_ptr<grpc::Channel> channel;
  grpc::ClientContext context;
  try {
    channel = istiod_channel(settings_);
    authenticate(context, settings_);
  } catch (const std::exception& e) {
    set_error(e.what());
    spdlog::error("xds: {}", e.what());
    return false;
  }
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    context_ = &context;
  }
  auto stub = discovery::AggregatedDiscoveryService::NewStub(channel);
  auto stream = stub->DeltaAggregatedResources(&context);
  ++connects_;

  bool first = true;
  for (const char* type : kTypes) {
    discovery::DeltaDiscoveryRequest request;
    request.set_type_url(type);
    if (first) {  // the Node goes on the stream's first request
      auto* n = request.mutable_node();
      n->set_id(node_id(node_));
      auto& fields = *n->mutable_metadata()->mutable_fields();
      fields["NAME"].set_string_value(node_.pod_name);
      fields["NAMESPACE"].set_string_value(node_.pod_namespace);
      fields["INSTANCE_IPS"].set_string_value(node_.instance_ip);
      fields["NODE_NAME"].set_string_value(node_.node_name);
      fields["CLUSTER_ID"].set_string_value(settings_.cluster_id);
      first = false;
    }
    for (const auto& [name, version] : versions_[type]) (*request.mutable_initial_resource_versions())[name] = version;
    if (!stream->Write(request)) break;
  }

  discovery::DeltaDiscoveryResponse response;
  while (stream->Read(&response)) {
    if (!std::exchange(got_response, true)) {
      connected_ = true;
      spdlog::info("xds: connected to {}", settings_.address);
    }
    const std::string& type = response.type_url();
    TypeStats& stats = stats_of(type);
    ++stats.received;
    discovery::DeltaDiscoveryRequest reply;
    reply.set_type_url(type);
    reply.set_response_nonce(response.nonce());
    Delta delta{type, {}, {}};
    std::vector<std::string> rejected, accepted_names, accepted_versions;
    if (type != kAddressType && type != kAuthorizationType) {
      rejected.push_back("type " + printable(type) + " was not subscribed to");
    } else {
      for (const auto& r : response.resources()) {
        try {
          delta.updated.push_back(decode(type, r.name(), r.resource()));
          accepted_names.push_back(r.name());
          accepted_versions.push_back(r.version());
        } catch (const std::exception& e) {
          rejected.push_back(printable(r.name()) + ": " + e.what());
          versions_[type].erase(r.name());  // so that a reconnect asks for it again
        }
      }
      const std::vector<std::string> removed(response.removed_resources().begin(), response.removed_resources().end());
      delta.removed = removed;
      std::string refused;
      if (!delta.updated.empty() || !delta.removed.empty() || stats.applied == 0) refused = apply_(std::move(delta));
      if (refused.empty()) {
        auto& held = versions_[type];
        for (size_t i = 0; i < accepted_names.size(); ++i) held[accepted_names[i]] = accepted_versions[i];
        for (const auto& name : removed) held.erase(name);
        stats.resources = held.size();
        stats.last_update_unix =
            std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
        ++stats.applied;  // the good part is in force; the bad part is NACKed below
      } else {
        rejected.assign(1, "the change was refused, nothing of it applied: " + refused);
        for (const auto& name : accepted_names) versions_[type].erase(name);
      }
    }
    if (!rejected.empty()) {
      std::string detail;
      for (const auto& r : rejected) detail += (detail.empty() ? "" : "; ") + r;
      reply.mutable_error_detail()->set_code(3);  // INVALID_ARGUMENT, as a gRPC status code
      reply.mutable_error_detail()->set_message(detail);
      ++stats.nacked;
      set_error("NACK " + short_type(type) + ": " + detail);
      spdlog::error("xds: NACK {} (nonce {}): {}", short_type(type), response.nonce(), detail);
    } else {
      spdlog::info("xds: ACK {} (nonce {}): {} updated, {} removed", short_type(type), response.nonce(),
                   accepted_names.size(), response.removed_resources_size());
    }
    if (!stream->Write(reply)) break;
  }
  stream->WritesDone();
  const grpc::Status status = stream->Finish();
  {
    std::lock_guard lock(mutex_);
    context_ = nullptr;
  }
  connected_ = false;
  if (!stopping_) {
    const std::string why = "stream to " + settings_.address + " ended: " + (status.ok() ? std::string("by the server")
                                : status_code_name(status.error_code()) + ": " + status.error_message());
    set_error(why);
    spdlog::warn("xds: {}; serving the last state received", why);
  }
  return got_response;
}

}  // namespace zmesh::xds
