// A module with the entry point of istiod's client (userspace/xds/istiod.h), built as if the
// layout of what crosses had changed: what a zmesh-istiod.so of another build looks like to
// zmeshd. xds_test installs it where zmeshd looks and checks that it is refused, not called.
#include <cstdint>

#include "istiod.h"

extern "C" __attribute__((visibility("default"))) const void* zmesh_istiod(int interface_version, uint64_t layout) {
  const uint64_t other_build = zmesh::xds::istiod_layout() ^ 1;  // e.g. a field added to WorkloadConfig
  static const int accepted = 0;
  return interface_version == zmesh::xds::kIstiodInterfaceVersion && layout == other_build ? &accepted : nullptr;
}
