// PipelineProbe (see include/zmesh/probe.h).
#include "zmesh/probe.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>

#include "libbpf_log.h"
#include "probe.skel.h"
#include "zmesh/datapath_error.h"
#include "zmesh_probe.h"

namespace zmesh {

void PipelineProbe::Destroy::operator()(probe_bpf* skel) const { probe_bpf__destroy(skel); }

PipelineProbe::PipelineProbe(Options options) {
  datapath::route_libbpf_log();
  skel_.reset(probe_bpf__open());
  if (!skel_) throw DatapathError("open BPF object probe", errno);
  skel_->rodata->drop_protocol = options.drop_protocol;
  if (int err = probe_bpf__load(skel_.get())) throw DatapathError("load BPF object probe", -err);
}

PipelineProbe::~PipelineProbe() = default;

int PipelineProbe::run(std::span<const uint8_t> frame) {
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_size_in = static_cast<__u32>(frame.size()),
              .repeat = 1);
  if (bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.zm_probe), &opts) != 0)
    throw DatapathError("BPF_PROG_TEST_RUN of zm_probe", errno);
  return static_cast<int>(opts.retval);
}

std::vector<ProbeCounter> PipelineProbe::counters() const {
  std::vector<ProbeCounter> out;
  const int fd = bpf_map__fd(skel_->maps.zm_probe_cnt);
  zm_probe_key key{}, next{};
  zm_probe_key* cursor = nullptr;
  while (bpf_map_get_next_key(fd, cursor, &next) == 0) {
    zm_probe_count value{};
    if (bpf_map_lookup_elem(fd, &next, &value) == 0)
      out.push_back({next.family, next.protocol, value.packets, value.bytes, value.dropped});
    key = next;
    cursor = &key;
  }
  std::ranges::sort(out, {}, [](const ProbeCounter& c) { return std::pair{c.family, c.protocol}; });
  return out;
}

void PipelineProbe::pin_counters(const std::filesystem::path& path) {
  if (int err = bpf_map__pin(skel_->maps.zm_probe_cnt, path.c_str()))
    throw DatapathError("pin map zm_probe_cnt at " + path.string(), -err);
}

}  // namespace zmesh
