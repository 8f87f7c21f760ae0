// The delta xDS client (issue 16): one bidirectional DeltaAggregatedResources stream to istiod,
// subscribed as ztunnel subscribes — wildcard, istio.workload.Address first, then
// istio.security.Authorization. Each response is decoded resource by resource: the good ones
// (and the removals) are handed to `apply` as one change, the bad ones left out and NACKed
// with an error_detail naming each and why; a response whose change `apply` refuses is NACKed
// whole. Every response is answered with its nonce. On a stream's end (istiod restarting, a
// GOAWAY, a network failure) the client reconnects after a jittered exponential backoff
// (10 ms doubling to 15 s, reset by a response) and sends `initial_resource_versions`: what it
// holds, the rejected resources left out so that istiod sends them again. Between streams
// zmeshd keeps serving what it has (fail static).
//
// The stream runs on its own thread (gRPC's synchronous API); `apply` is called there and is
// expected to carry the change to the controller's thread and wait for its result.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "istiod_channel.h"
#include "translate.h"

namespace grpc {
class ClientContext;
}

namespace zmesh::xds {

class XdsClient final : public Feed {
 public:
  XdsClient(IstiodSettings settings, NodeIdentity node, Apply apply);
  ~XdsClient() override;  // stops
  XdsClient(const XdsClient&) = delete;
  XdsClient& operator=(const XdsClient&) = delete;

  void start() override;
  void stop() override;

  bool connected() const override { return connected_; }
  uint64_t connects() const override { return connects_; }
  bool synced() const override { return address_.applied > 0 && authorization_.applied > 0; }
  const TypeStats& stats(const std::string& type_url) const override;
  std::string last_error() const override;

  // The Node istiod sees (tests check it).
  static std::string node_id(const NodeIdentity& node);

 private:
  void run();
  // One stream, until it ends; returns whether a response came (the backoff resets).
  bool stream_once();
  TypeStats& stats_of(const std::string& type_url);
  void set_error(const std::string& error);

  IstiodSettings settings_;
  NodeIdentity node_;
  Apply apply_;
  std::thread thread_;
  std::atomic<bool> stopping_{false}, connected_{false};
  std::atomic<uint64_t> connects_{0};
  mutable std::mutex mutex_;  // guards context_, last_error_ and the stop wait
  std::condition_variable wake_;
  grpc::ClientContext* context_ = nullptr;  // the open stream's, for stop() to cancel
  std::string last_error_;
  TypeStats address_, authorization_;
  // What is held, by type and name: sent back as initial_resource_versions.
  std::map<std::string, std::map<std::string, std::string>> versions_;
};

}  // namespace zmesh::xds
