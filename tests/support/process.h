// Child processes for tests: run a command to completion, or keep one running (a server in a
// pod) while the test talks to it. Every child is killed when its Process object goes away,
// so a failing test leaves no process behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace zmesh::test {

struct Result {
  int exit_code = -1;  // 128 + signal when killed by a signal
  std::string out;
  std::string err;
};

// Runs argv to completion (killed after `limit`), capturing stdout and stderr.
Result run(const std::vector<std::string>& argv, std::chrono::seconds limit = std::chrono::seconds(60));

// Whether the process `pid` (not a child of ours: a lab's zmeshd) has exited within `limit`.
bool exits(pid_t pid, std::chrono::milliseconds limit = std::chrono::seconds(10));

class Process {
 public:
  enum class Stderr { Inherit, Merge };
  // Starts argv with stdout on a pipe; stderr goes to the test's stderr, or into the same pipe.
  explicit Process(const std::vector<std::string>& argv, Stderr stderr_mode = Stderr::Inherit);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Next line of stdout without its newline; nullopt on EOF or when `limit` passes first.
  std::optional<std::string> read_line(std::chrono::milliseconds limit = std::chrono::seconds(10));
  // Reads lines until one contains `needle` (returned); nullopt on EOF/timeout, with every line
  // read so far in `seen`.
  std::optional<std::string> wait_for(const std::string& needle, std::string* seen = nullptr,
                                      std::chrono::milliseconds limit = std::chrono::seconds(20));
  // Waits for exit (killing it after `limit`); returns the exit code, 128 + signal if killed.
  int wait(std::chrono::milliseconds limit = std::chrono::seconds(30));
  void kill(int signal = 9);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string buffer_;
  std::optional<int> status_;
};

}  // namespace zmesh::test
