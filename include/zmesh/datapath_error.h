// The datapath module's error: what failed in the kernel, why, and what usually causes it.
#pragma once

#include <stdexcept>
#include <string>

namespace zmesh {

class DatapathError : public std::runtime_error {
 public:
  // `what` says what was attempted ("load BPF object probe"); `err` is a positive errno.
  DatapathError(const std::string& what, int err);
  int error_code() const { return err_; }

 private:
  int err_;
};

}  // namespace zmesh
