// See istiod.h.
#include "istiod.h"

#include <dlfcn.h>

#include <mutex>

namespace zmesh::xds {

std::filesystem::path istiod_module_path() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw IstiodError("cannot find zmeshd's own executable (/proc/self/exe): " + ec.message());
  return exe.parent_path().parent_path() / "lib" / "zmesh" / "zmesh-istiod.so";
}

namespace {

const Istiod& load() {
  const auto path = istiod_module_path();
  const std::string why = "istiod's xDS and CA client " + path.string();
  // RTLD_NOW: a symbol missing from a library it needs fails here, with its name, not at the
  // first call. RTLD_LOCAL: its static copies of zmesh's code stay its own. It stays loaded.
  void* module = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!module) throw IstiodError("cannot load " + why + ": " + dlerror() + " (it is built and installed with zmeshd)");
  auto entry = reinterpret_cast<IstiodEntryPoint>(dlsym(module, kIstiodEntryPoint));
  if (!entry) throw IstiodError(why + " has no " + kIstiodEntryPoint + ": it is not zmesh's module");
  const Istiod* istiod = entry(kIstiodInterfaceVersion, istiod_layout());
  if (!istiod) throw IstiodError(why + " is from another zmesh build (interface version " +
                                 std::to_string(kIstiodInterfaceVersion) + " or the layout of what crosses differs)");
  return *istiod;
}

}  // namespace

const Istiod& istiod() {
  static std::once_flag once;
  static const Istiod* loaded = nullptr;
  std::call_once(once, [] { loaded = &load(); });  // a throw leaves the flag unset: tried again
  return *loaded;
}

}  // namespace zmesh::xds
