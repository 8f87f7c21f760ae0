// eventually(condition): polls until the condition holds or a deadline passes. Tests wait on
// what the daemon counts (/stats, /metrics, kernel counters) with this, never with a fixed
// sleep: a busy machine only makes them slower, not wrong.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace zmesh::test {

inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds limit = std::chrono::seconds(20),
                       std::chrono::milliseconds interval = std::chrono::milliseconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

}  // namespace zmesh::test
