#include "libbpf_log.h"

#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <string>

namespace zmesh::datapath {
namespace {

int print(enum libbpf_print_level level, const char* format, va_list args) {
  char line[1024];
  int n = std::vsnprintf(line, sizeof line, format, args);
  std::string text(line, n > 0 ? std::min<size_t>(static_cast<size_t>(n), sizeof line - 1) : 0);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  // Asking an interface without a clsact qdisc whether our filter is there (cleanup, unenroll)
  // is a normal question; the kernel's "no" is not worth a warning.
  if (text.find("Parent Qdisc doesn't exist") != std::string::npos) level = LIBBPF_DEBUG;
  switch (level) {
    case LIBBPF_WARN:
      spdlog::warn("libbpf: {}", text);
      break;
    case LIBBPF_INFO:
      spdlog::info("libbpf: {}", text);
      break;
    case LIBBPF_DEBUG:
      spdlog::debug("libbpf: {}", text);
      break;
  }
  return n;
}

}  // namespace

void route_libbpf_log() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(print); });
}

}  // namespace zmesh::datapath
