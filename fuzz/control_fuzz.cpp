// The control socket's request decoding on arbitrary bytes: a request, or ConfigError.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "zmesh/control.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto request = zmesh::control::parse_request(std::string(reinterpret_cast<const char*>(data), size), "node1");
    using C = zmesh::control::Request::Command;
    if (request.command == C::Enroll && !request.workload) std::abort();
    if (request.command == C::PolicyApply && !request.policy) std::abort();
    if ((request.command == C::Unenroll || request.command == C::PolicyDelete) &&
        request.name.find('/') == std::string::npos)
      std::abort();
  } catch (const zmesh::ConfigError&) {
  }
  return 0;
}
