// An HBONE CONNECT's :authority and forwarded header on arbitrary bytes (a malformed header
// is an exception with a reason, nothing else). An accepted authority
// prints back as one that parses to the same endpoint, with a port 1..65535.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "hbone_head.h"
#include "zmesh/address.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (const auto target = zmesh::hbone::parse_authority(text)) {
    if (target->port() == 0) std::abort();
    const auto again = zmesh::hbone::parse_authority(zmesh::to_string(*target));
    if (!again || *again != *target) std::abort();
  }
  try {
    (void)zmesh::hbone::forwarded_for(text);
  } catch (const std::invalid_argument&) {  // malformed: refused with a reason
  }
  return 0;
}
