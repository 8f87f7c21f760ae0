// zmeshctl, the operator's CLI. At this stage: its version, and `zmeshctl lab ...`, which
// runs scripts/lab (the mesh of namespaces on this machine) from the source tree or install.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <vector>

namespace {

// The lab script: $ZMESH_LAB, else <source>/scripts/lab next to build/bin, else the install.
std::filesystem::path lab_script() {
  if (const char* env = std::getenv("ZMESH_LAB")) return env;
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  for (auto candidate : {self.parent_path() / "../../scripts/lab", self.parent_path() / "../share/zmesh/lab"}) {
    if (std::filesystem::exists(candidate, ec)) return candidate.lexically_normal();
  }
  return ZMESH_SOURCE_DIR "/scripts/lab";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"zmeshctl: inspect and drive zmesh"};
  app.set_version_flag("--version", std::string("zmeshctl ") + ZMESH_VERSION);
  app.require_subcommand(1);
  auto* lab = app.add_subcommand("lab", "the lab mesh of namespaces: up, down, exec, show, list, gc");
  lab->prefix_command();  // everything after `lab` goes to the script untouched
  lab->set_help_flag();   // and so does --help: the script documents itself
  CLI11_PARSE(app, argc, argv);

  if (lab->parsed()) {
    const auto script = lab_script();
    std::vector<std::string> args{script.string()};
    for (const auto& arg : lab->remaining()) args.push_back(arg);
    std::vector<char*> argv_out;
    for (auto& arg : args) argv_out.push_back(arg.data());
    argv_out.push_back(nullptr);
    execv(argv_out[0], argv_out.data());
    std::cerr << "zmeshctl: cannot run " << script << ": " << std::strerror(errno) << '\n';
    return 1;
  }
  return 0;
}
