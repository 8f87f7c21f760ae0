// DatapathError messages: the errno text plus the cause an operator should check first.
#include <cstring>

#include "zmesh/datapath_error.h"

namespace zmesh {
namespace {

const char* hint(int err) {
  switch (err) {
    case EPERM:
    case EACCES:
      return "zmesh needs root, or CAP_NET_ADMIN + CAP_SYS_ADMIN, as the chart grants";
    case ENOENT:
      return "no such file, object or directory: check the path (bpffs mounted? cgroup there?)";
    case E2BIG:
    case ENOSPC:
      return "the map is full";
    case EINVAL:
      return "the kernel refused the request (for a program load, --log-level debug shows the verifier's log; "
             "for --tc-mode tcx, the kernel may lack tcx)";
    case ENOTSUP:
      return "this kernel lacks the feature";
    default:
      return nullptr;
  }
}

std::string message(const std::string& what, int err) {
  std::string text = what + ": " + std::strerror(err);
  if (const char* cause = hint(err)) text += std::string(" (") + cause + ")";
  return text;
}

}  // namespace

DatapathError::DatapathError(const std::string& what, int err) : std::runtime_error(message(what, err)), err_(err) {}

}  // namespace zmesh
