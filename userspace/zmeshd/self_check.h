// The start-up self-check: the kernel facts zmesh needs, and proof that it runs our programs.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "zmesh/kernel.h"

namespace zmesh {

struct SelfCheck {
  KernelFacts facts;
  std::vector<std::string> problems;  // empty when zmesh can run here
  bool ok() const { return problems.empty(); }
  nlohmann::json to_json() const;
};

// Never throws: every failure becomes a problem that says what to fix.
SelfCheck run_self_check();

}  // namespace zmesh
