// The datapath's attachments: each program on its hook is a BPF link pinned under
// <pin root>/links/ by a name that says where it hangs ("cg_<cgroup id>_<kind>",
// "tc_<ifindex>_<ifname>" for tc ingress, "tce_..." for the pod's door), so that a restarted
// daemon adopts the links instead of leaving the pods uncaptured while it starts.
#pragma once

#include <bpf/libbpf.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "zmesh/datapath.h"

namespace zmesh::datapath {

enum class TcDirection { Ingress, Egress };

class Links {
 public:
  // The program a link of that name runs; nullptr for a name this build does not know.
  using ProgramFor = std::function<bpf_program*(const std::string& link_name)>;

  // `mode`: Tcx or Clsact as the kernel allows; `requested`: what the operator asked for
  // (Auto lets a refused tcx attach fall back to clsact).
  Links(std::filesystem::path pin_root, TcMode mode, TcMode requested, ProgramFor program_for);
  ~Links();
  Links(const Links&) = delete;
  Links& operator=(const Links&) = delete;

  // Takes over the links a previous daemon pinned; they keep running its programs (and the
  // maps those hold) until commit() swaps this daemon's in. Links of hooks that are gone
  // are removed.
  void adopt();
  // From here on attachments are live at once: this daemon's programs go into the adopted
  // links (BPF_LINK_UPDATE, one atomic swap each), deferred clsact filters are attached, and
  // the links no call to attach claimed since start are detached.
  void commit();

  void attach_cgroup(const std::filesystem::path& cgroup, const std::string& kind);
  void detach_cgroup(uint64_t cgroup_id, const std::string& kind);
  // Throws DatapathError (ENODEV) when the interface is not there.
  void attach_tc(const std::string& ifname, TcDirection direction);
  // `ifindex` 0: the interface is gone (its links went with it; only our records remain).
  void detach_tc(const std::string& ifname, unsigned ifindex, TcDirection direction);
  // tc ingress on every interface of this netns but lo; links of interfaces gone are dropped.
  void hook_all_interfaces();
  void detach(const std::string& name);

  std::vector<std::string> names() const;
  TcMode tc_mode() const { return mode_; }

  // Detaches and unpins every link under pin_root and our clsact filters on every interface.
  static void remove_all(const std::filesystem::path& pin_root);

 private:
  struct DestroyLink {
    void operator()(bpf_link* link) const { bpf_link__destroy(link); }
  };
  using LinkPtr = std::unique_ptr<bpf_link, DestroyLink>;

  std::filesystem::path pin(const std::string& name) const;
  void keep(const std::string& name, LinkPtr link);
  bpf_program* program(const std::string& name) const;

  std::filesystem::path pin_root_;
  TcMode mode_, requested_;
  ProgramFor program_for_;
  std::map<std::string, LinkPtr> links_;  // pin name -> link
  std::set<std::string> claimed_;         // names attach_*() asked for since start
  std::set<std::string> adopted_;         // running a previous daemon's programs until commit()
  bool committed_ = false;
  // clsact mode: filters to attach at commit(), for replacing one would put this daemon's
  // programs to work before its maps are filled.
  std::set<std::pair<std::string, TcDirection>> clsact_pending_;
};

}  // namespace zmesh::datapath
