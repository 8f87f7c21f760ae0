// Micro-benchmarks of zmesh's per-connection hot paths (Google Benchmark). They report; they
// never fail a test. Run: build/bench/zmesh_micro (root for the kernel map one).
#include <benchmark/benchmark.h>
#include <nghttp2/nghttp2.h>
#include <sched.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "zmesh/config.h"
#include "zmesh/datapath.h"
#include "zmesh/kernel.h"
#include "zmesh/mesh.h"
#include "zmesh/policy.h"

namespace {

using boost::asio::ip::address_v4;
using boost::asio::ip::make_address;

// A mesh of `n` workloads in 10 namespaces, and policies of the usual kinds.
zmesh::MeshConfig mesh_config(int n, int policies) {
  zmesh::MeshConfig config;
  for (int i = 0; i < n; ++i) {
    zmesh::WorkloadConfig w;
    w.name = "w" + std::to_string(i);
    w.namespace_ = "ns" + std::to_string(i % 10);
    w.service_account = "sa" + std::to_string(i % 50);
    w.node = i % 2 ? "node2" : "node1";
    w.ips = {address_v4(0x0af40000u + static_cast<uint32_t>(i))};
    config.workloads.push_back(w);
  }
  for (int i = 0; i < policies; ++i) {
    zmesh::AuthorizationPolicy p;
    p.name = "p" + std::to_string(i);
    p.namespace_ = "ns" + std::to_string(i % 10);
    p.action = i % 3 == 0 ? zmesh::AuthorizationPolicy::Action::Deny : zmesh::AuthorizationPolicy::Action::Allow;
    zmesh::PolicyMatch source, ports;
    source.principals = {"cluster.local/ns/ns" + std::to_string(i % 10) + "/sa/sa" + std::to_string(i % 50)};
    source.namespaces = {"ns" + std::to_string((i + 1) % 10)};
    source.source_ips = {{make_address("10.9.0.0"), 16}};
    ports.ports = {8080, 9090};
    zmesh::PolicyRule rule{{zmesh::PolicyClause{{source}}, zmesh::PolicyClause{{ports}}}};
    p.rules.push_back(rule);
    config.policies.push_back(p);
  }
  return config;
}

void BM_MeshLookupByIp(benchmark::State& state) {
  const auto config = mesh_config(static_cast<int>(state.range(0)), 0);
  const zmesh::Mesh mesh(config, "cluster.local", "node1");
  uint32_t i = 0;
  for (auto _ : state) {
    const auto ip = address_v4(0x0af40000u + (i++ % static_cast<uint32_t>(state.range(0))));
    benchmark::DoNotOptimize(mesh.by_ip(ip));
  }
}
BENCHMARK(BM_MeshLookupByIp)->Arg(100)->Arg(10000);

void BM_PolicyDecide(benchmark::State& state) {
  const auto config = mesh_config(1000, static_cast<int>(state.range(0)));
  const zmesh::Mesh mesh(config, "cluster.local", "node1");
  const zmesh::Authorizer authorizer(config.policies);
  const auto* destination = mesh.by_ip(address_v4(0x0af40000u + 3));
  const zmesh::SpiffeId source{"cluster.local", "ns4", "sa4"};
  for (auto _ : state)
    benchmark::DoNotOptimize(authorizer.decide({source, make_address("10.244.7.7"), destination, 8080}));
}
BENCHMARK(BM_PolicyDecide)->Arg(0)->Arg(10)->Arg(100)->Arg(1000);

// HBONE framing as zmesh configures nghttp2 (manual window updates, 256 KiB frames): a CONNECT
// and `range` bytes of DATA from a client session into a server session, in memory.
ssize_t send_all(nghttp2_session* from, nghttp2_session* to) {
  ssize_t moved = 0;
  for (;;) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(from, &data);
    if (n <= 0) return moved;
    nghttp2_session_mem_recv(to, data, static_cast<size_t>(n));
    moved += n;
  }
}

void BM_HboneFraming(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  static std::vector<uint8_t> payload(1 << 20, 0x5a);
  for (auto _ : state) {
    nghttp2_session_callbacks* callbacks = nullptr;
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        callbacks, [](nghttp2_session* s, uint8_t, int32_t id, const uint8_t*, size_t len, void*) {
          nghttp2_session_consume(s, id, len);  // as Stream::consumed does after the write
          return 0;
        });
    nghttp2_session_callbacks_set_data_source_read_length_callback(
        callbacks, [](nghttp2_session*, uint8_t, int32_t, int32_t session_window, int32_t stream_window,
                      uint32_t remote_max_frame, void*) -> ssize_t {
          return std::min<ssize_t>({session_window, stream_window, static_cast<ssize_t>(remote_max_frame), 256 << 10});
        });
    nghttp2_option* option = nullptr;
    nghttp2_option_new(&option);
    nghttp2_option_set_no_auto_window_update(option, 1);
    nghttp2_session *client = nullptr, *server = nullptr;
    nghttp2_session_client_new2(&client, callbacks, nullptr, option);
    nghttp2_session_server_new2(&server, callbacks, nullptr, option);
    const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 4 << 20},
                                               {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 256 << 10}};
    nghttp2_submit_settings(client, NGHTTP2_FLAG_NONE, settings, 2);
    nghttp2_submit_settings(server, NGHTTP2_FLAG_NONE, settings, 2);
    nghttp2_session_set_local_window_size(server, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    struct Source {
      size_t left;
    } source{bytes};
    nghttp2_data_provider provider{};
    provider.source.ptr = &source;
    provider.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                                nghttp2_data_source* src, void*) -> ssize_t {
      auto* s = static_cast<Source*>(src->ptr);
      const size_t n = std::min({length, s->left, payload.size()});
      std::memcpy(buf, payload.data(), n);
      s->left -= n;
      if (s->left == 0) *flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(n);
    };
    std::string m = ":method", c = "CONNECT", a = ":authority", t = "10.244.2.2:8080";
    nghttp2_nv nva[] = {{reinterpret_cast<uint8_t*>(m.data()), reinterpret_cast<uint8_t*>(c.data()), m.size(), c.size(), 0},
                        {reinterpret_cast<uint8_t*>(a.data()), reinterpret_cast<uint8_t*>(t.data()), a.size(), t.size(), 0}};
    nghttp2_submit_request(client, nullptr, nva, 2, &provider, nullptr);
    while (send_all(client, server) + send_all(server, client) > 0) {
    }
    nghttp2_session_del(client);
    nghttp2_session_del(server);
    nghttp2_option_del(option);
    nghttp2_session_callbacks_del(callbacks);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(bytes));
}
BENCHMARK(BM_HboneFraming)->Arg(64)->Arg(1 << 20)->Arg(16 << 20);

// Original-destination recovery: one BPF map lookup (and delete) per accepted connection, on
// the real pinned map, through the real API. The datapath starts in a private netns (its
// routing rule goes there) with a scratch cgroup, and is removed afterwards.
void BM_OriginalDestinationLookup(benchmark::State& state) {
  const auto cgroup2 = zmesh::find_mount("cgroup2");
  if (geteuid() != 0 || !cgroup2 || unshare(CLONE_NEWNET) != 0) {
    state.SkipWithError("needs root and cgroup v2");
    return;
  }
  const std::string suffix = "zmesh-micro-" + std::to_string(getpid());
  zmesh::DatapathOptions options;
  options.pin_root = "/sys/fs/bpf/" + suffix;
  options.outbound_ip4 = address_v4::from_string("10.244.1.1");
  options.proxy_cgroup = *cgroup2 / suffix;
  std::filesystem::create_directories(options.proxy_cgroup);
  zmesh::bring_up_loopback();  // the local delivery route lives on lo, down in a new netns
  try {
    auto datapath = zmesh::BpfDatapath::start(options);
    const zmesh::TcpEndpoint peer(make_address("10.244.1.2"), 40000), local(make_address("10.244.1.1"), 15001);
    for (auto _ : state) benchmark::DoNotOptimize(datapath->original_destination(peer, local));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  zmesh::BpfDatapath::cleanup(options);
  std::filesystem::remove(options.proxy_cgroup);
}
BENCHMARK(BM_OriginalDestinationLookup);

}  // namespace

BENCHMARK_MAIN();
