// zmesh-istiod.so (istiod.h): the xDS client and istiod's CA, with gRPC and protobuf, loaded by
// zmeshd only when istiod feeds it. Its one exported symbol is the entry point.
#include "ca_client.h"
#include "istiod.h"
#include "xds_client.h"

namespace zmesh::xds {
namespace {

struct Module final : Istiod {
  std::unique_ptr<Feed> feed(IstiodSettings settings, NodeIdentity node, Feed::Apply apply) const override {
    return std::make_unique<XdsClient>(std::move(settings), std::move(node), std::move(apply));
  }
  Certificates::Source ca(IstiodSettings settings, std::chrono::seconds validity) const override {
    return IstiodCa(std::move(settings), validity).source();
  }
  uint64_t ca_failures() const override { return IstiodCa::failures_in_process(); }
};

}  // namespace
}  // namespace zmesh::xds

extern "C" __attribute__((visibility("default"))) const zmesh::xds::Istiod* zmesh_istiod(int interface_version,
                                                                                        uint64_t layout) {
  static const zmesh::xds::Module module;
  const bool same = interface_version == zmesh::xds::kIstiodInterfaceVersion && layout == zmesh::xds::istiod_layout();
  return same ? &module : nullptr;
}
