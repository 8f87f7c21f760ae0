#include "links.h"

#include <bpf/bpf.h>
#include <net/if.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "fd.h"
#include "kernel_objects.h"
#include "zmesh/datapath_error.h"

namespace zmesh::datapath {
namespace fs = std::filesystem;

namespace {

constexpr auto kTcxIngress = static_cast<bpf_attach_type>(46);  // BPF_TCX_INGRESS; libbpf 1.1 predates it
constexpr auto kTcxEgress = static_cast<bpf_attach_type>(47);   // BPF_TCX_EGRESS
constexpr uint32_t kTcHandle = 0x5a0;                           // our clsact filter: handle and priority
constexpr uint32_t kTcPriority = 1;

struct TcHook {
  const char* prefix;  // of the link's pin name: "<prefix><ifindex>_<ifname>"
  const char* what;
  bpf_attach_type tcx;
  bpf_tc_attach_point clsact;
};
constexpr TcHook kTcHooks[] = {{"tc_", "tc ingress", kTcxIngress, BPF_TC_INGRESS},
                               {"tce_", "tc egress (the pod's door)", kTcxEgress, BPF_TC_EGRESS}};
const TcHook& hook_of(TcDirection d) { return kTcHooks[static_cast<int>(d)]; }

// The index keeps a link of a vanished interface apart from one of a new interface that
// took its name.
std::string tc_link_name(TcDirection direction, unsigned ifindex, const std::string& ifname) {
  return hook_of(direction).prefix + std::to_string(ifindex) + "_" + ifname;
}

// Whether a tc link's interface is still the one it was made for.
bool tc_link_current(const std::string& name) {
  for (const auto& hook : kTcHooks) {
    const std::string prefix = hook.prefix;
    if (name.rfind(prefix, 0) != 0) continue;
    const auto underscore = name.find('_', prefix.size());
    if (underscore == std::string::npos) return false;
    char ifname[IF_NAMESIZE] = {};
    const unsigned ifindex = static_cast<unsigned>(std::strtoul(name.c_str() + prefix.size(), nullptr, 10));
    return if_indextoname(ifindex, ifname) && name.substr(underscore + 1) == ifname;
  }
  return true;  // not a tc link
}

// Detaches a link from its hook for good (not just closing our fd) and removes its pin.
void detach_and_unpin(bpf_link* link, const fs::path& pin) {
  bpf_link__detach(link);
  std::error_code ec;
  fs::remove(pin, ec);
}

void detach_clsact(int ifindex, bpf_tc_attach_point point) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
  if (bpf_tc_query(&hook, &opts) == 0) {
    LIBBPF_OPTS(bpf_tc_opts, detach, .handle = kTcHandle, .priority = kTcPriority);
    bpf_tc_detach(&hook, &detach);
  }
}

std::vector<std::pair<std::string, unsigned>> interfaces() {
  struct if_nameindex* list = if_nameindex();
  if (!list) throw DatapathError("list the interfaces of this netns", errno);
  std::vector<std::pair<std::string, unsigned>> out;
  for (auto* i = list; i->if_index != 0; ++i) out.emplace_back(i->if_name, i->if_index);
  if_freenameindex(list);
  return out;
}

}  // namespace

Links::Links(fs::path pin_root, TcMode mode, TcMode requested, ProgramFor program_for)
    : pin_root_(std::move(pin_root)), mode_(mode), requested_(requested), program_for_(std::move(program_for)) {}
Links::~Links() = default;

fs::path Links::pin(const std::string& name) const { return pin_root_ / "links" / name; }

bpf_program* Links::program(const std::string& name) const {
  bpf_program* prog = program_for_(name);
  if (!prog) throw std::logic_error("datapath: no program for link " + name);
  return prog;
}

void Links::adopt() {
  for (const auto& entry : fs::directory_iterator(pin_root_ / "links")) {
    const std::string name = entry.path().filename();
    LinkPtr link(bpf_link__open(entry.path().c_str()));
    if (!link || !program_for_(name) || !tc_link_current(name)) {
      spdlog::warn("datapath: pinned link {} cannot be adopted (its hook is gone?); removing it", name);
      if (link) detach_and_unpin(link.get(), entry.path());
      else fs::remove(entry.path());
      continue;
    }
    spdlog::debug("datapath: adopted pinned link {}", name);
    links_.emplace(name, std::move(link));
    adopted_.insert(name);
  }
}

void Links::commit() {
  committed_ = true;
  for (const auto& name : std::exchange(adopted_, {})) {
    auto it = links_.find(name);
    if (it == links_.end()) continue;  // detached since
    if (bpf_link__update_program(it->second.get(), program(name)) != 0) {
      spdlog::warn("datapath: pinned link {} cannot take this daemon's program ({}); removing it", name,
                   std::strerror(errno));
      detach(name);
    }
  }
  for (const auto& [ifname, direction] : std::exchange(clsact_pending_, {})) {
    try {
      attach_tc(ifname, direction);
    } catch (const DatapathError& e) {
      if (e.error_code() != ENODEV) throw;  // the interface left meanwhile
    }
  }
  std::vector<std::string> stale;
  for (const auto& [name, link] : links_)
    if (!claimed_.contains(name)) stale.push_back(name);
  for (const auto& name : stale) {
    spdlog::info("datapath: removing link {} that nothing claims any more", name);
    detach(name);
  }
}

void Links::keep(const std::string& name, LinkPtr link) {
  if (int err = bpf_link__pin(link.get(), pin(name).c_str())) {
    bpf_link__detach(link.get());
    throw DatapathError("pin link " + pin(name).string(), -err);
  }
  links_.emplace(name, std::move(link));
}

void Links::attach_cgroup(const fs::path& cgroup_path, const std::string& kind) {
  Cgroup cgroup = open_cgroup(cgroup_path);
  const std::string name = "cg_" + std::to_string(cgroup.id) + "_" + kind;
  claimed_.insert(name);
  if (links_.contains(name)) return;
  LinkPtr link(bpf_program__attach_cgroup(program(name), cgroup.fd.get()));
  if (!link) throw DatapathError("attach " + kind + " to cgroup " + cgroup_path.string(), errno);
  keep(name, std::move(link));
}

void Links::detach_cgroup(uint64_t cgroup_id, const std::string& kind) {
  detach("cg_" + std::to_string(cgroup_id) + "_" + kind);
}

void Links::attach_tc(const std::string& ifname, TcDirection direction) {
  const unsigned ifindex = interface_index(ifname);
  const TcHook& hook = hook_of(direction);
  const std::string name = tc_link_name(direction, ifindex, ifname);
  claimed_.insert(name);
  const int prog_fd = bpf_program__fd(program(name));
  if (mode_ == TcMode::Tcx) {
    if (links_.contains(name)) return;
    UniqueFd link_fd(bpf_link_create(prog_fd, static_cast<int>(ifindex), hook.tcx, nullptr));
    if (link_fd) {
      if (bpf_obj_pin(link_fd.get(), pin(name).c_str()) != 0)
        throw DatapathError("pin tcx link " + pin(name).string(), errno);
      links_.emplace(name, LinkPtr(bpf_link__open(pin(name).c_str())));
      return;
    }
    if (requested_ == TcMode::Tcx || errno != EINVAL)
      throw DatapathError(std::string("attach ") + hook.what + " (tcx) to " + ifname, errno);
    spdlog::info("datapath: tcx is not available here; using clsact for tc");
    mode_ = TcMode::Clsact;
  }
  if (!committed_) {
    clsact_pending_.insert({ifname, direction});
    return;
  }
  LIBBPF_OPTS(bpf_tc_hook, qdisc, .ifindex = static_cast<int>(ifindex), .attach_point = hook.clsact);
  if (int err = bpf_tc_hook_create(&qdisc); err && err != -EEXIST)
    throw DatapathError("create clsact qdisc on " + ifname, -err);
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE, .handle = kTcHandle,
              .priority = kTcPriority);
  if (int err = bpf_tc_attach(&qdisc, &opts))
    throw DatapathError(std::string("attach ") + hook.what + " (clsact) to " + ifname, -err);
}

void Links::detach_tc(const std::string& ifname, unsigned ifindex, TcDirection direction) {
  if (ifindex) {
    detach(tc_link_name(direction, ifindex, ifname));
    detach_clsact(static_cast<int>(ifindex), hook_of(direction).clsact);
    return;
  }
  std::vector<std::string> gone;
  const std::string prefix = hook_of(direction).prefix, suffix = "_" + ifname;
  for (const auto& [name, link] : links_)
    if (name.rfind(prefix, 0) == 0 && name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 && !tc_link_current(name))
      gone.push_back(name);
  for (const auto& name : gone) detach(name);
}

void Links::hook_all_interfaces() {
  for (const auto& [name, ifindex] : interfaces()) {
    if (name == "lo") continue;
    try {
      attach_tc(name, TcDirection::Ingress);
    } catch (const DatapathError& e) {
      if (e.error_code() != ENODEV) throw;  // gone since it was listed
    }
  }
  std::vector<std::string> gone;
  for (const auto& [name, link] : links_)
    if (!tc_link_current(name)) gone.push_back(name);
  for (const auto& name : gone) detach(name);
}

void Links::detach(const std::string& name) {
  claimed_.erase(name);
  if (auto it = links_.find(name); it != links_.end()) {
    detach_and_unpin(it->second.get(), pin(name));
    links_.erase(it);
  }
}

std::vector<std::string> Links::names() const {
  std::vector<std::string> out;
  for (const auto& [name, link] : links_) out.push_back(name);
  return out;
}

void Links::remove_all(const fs::path& pin_root) {
  std::error_code ec;
  if (fs::is_directory(pin_root / "links", ec)) {
    for (const auto& entry : fs::directory_iterator(pin_root / "links")) {
      if (LinkPtr link{bpf_link__open(entry.path().c_str())}) bpf_link__detach(link.get());
      fs::remove(entry.path(), ec);
    }
  }
  if (struct if_nameindex* list = if_nameindex()) {
    for (auto* i = list; i->if_index != 0; ++i)
      for (const auto& hook : kTcHooks) detach_clsact(static_cast<int>(i->if_index), hook.clsact);
    if_freenameindex(list);
  }
}

}  // namespace zmesh::datapath
