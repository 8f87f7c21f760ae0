// zmesh's HTTP/2 server side (http2::Connection, Role::Server: its nghttp2 callbacks, request
// dispatch, the header-list limit, stream close, GOAWAY on bad input, flow control through
// Stream::consumed) on arbitrary bytes from a client, over a real loopback TLS 1.3 connection
// with the contexts HBONE uses. Byte 0 picks the handler: bit 0 clear, a CONNECT is answered
// 200 and tunnelled (what the tunnel receives is consumed and echoed); set, every request gets
// 503. The rest of the input is HTTP/2 frames, sent after the client preface; then the client
// sends FIN. Checks: the connection ends within 2 s of the FIN, on_close runs once, nothing of
// the session still waits; after close() no stream is left; every request the handler got has
// a :method and is closed; the Connection is freed with its last outside reference.
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

#include "zmesh/http2.h"
#include "zmesh/identity.h"

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using zmesh::http2::Connection;
using zmesh::http2::error_code;
using zmesh::http2::Stream;
using zmesh::http2::TlsStream;
using namespace std::chrono_literals;

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr auto kHandshakeBound = 5s;
constexpr auto kEndBound = 2s;  // from the client's FIN to the end of every wait of the session

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "http2_server_fuzz: %s\n", what);
  std::abort();
}

// Made once per process: one thread, one io_context; a CA, the server's and the client's
// contexts; the loopback listener every input connects to. Logs are formatted (so what they
// print of the peer's bytes is exercised too) into a null sink.
struct World {
  asio::io_context io;
  std::shared_ptr<asio::ssl::context> server_tls, client_tls;
  tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};

  World() {
    const auto ca = zmesh::CertificateAuthority::create("cluster.local");
    server_tls = zmesh::make_server_context(ca.issue({"cluster.local", "zmesh-system", "zmesh"}, 24h), ca.bundle());
    client_tls = zmesh::make_client_context(ca.issue({"cluster.local", "default", "client"}, 24h), ca.bundle());
    auto logger = std::make_shared<spdlog::logger>("fuzz", std::make_shared<spdlog::sinks::null_sink_mt>());
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(std::move(logger));
  }
};

World& world() {
  static World instance;
  return instance;
}

// Runs until nothing is left to do or `bound` passed; true when nothing is left.
bool run(asio::io_context& io, std::chrono::steady_clock::duration bound) {
  io.restart();
  io.run_for(bound);
  return io.stopped();
}

// One input's view of the server: what the handler got, how often on_close ran.
struct Session {
  bool tunnel_connects = false;
  std::vector<std::shared_ptr<Stream>> requests;
  int closes = 0;
};

// An accepted CONNECT: consumes and echoes what arrives until the client's END_STREAM or an
// error, then half-closes.
asio::awaitable<void> tunnel(std::shared_ptr<Stream> stream) {
  for (;;) {
    auto [ec, chunk] = co_await stream->take_some();
    if (ec || chunk.empty()) break;
    stream->consumed(chunk.size());
    if (co_await stream->write(asio::buffer(chunk))) break;
  }
  stream->close_write();
}

asio::awaitable<void> send(TlsStream& client, std::vector<uint8_t> bytes) {
  co_await client.write(asio::buffer(bytes));
}

asio::awaitable<void> read_to_end(TlsStream& client) {
  std::array<uint8_t, 16 << 10> buf;
  for (;;) {
    auto [ec, n] = co_await client.read_some(asio::buffer(buf));
    if (ec) break;
  }
}

asio::awaitable<void> handshake(TlsStream& tls, asio::ssl::stream_base::handshake_type side, error_code& result) {
  try {
    co_await tls.handshake(side);
    result = {};
  } catch (const boost::system::system_error& e) {
    result = e.code();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  World& w = world();
  Session session;
  session.tunnel_connects = (data[0] & 1) == 0;

  TlsStream client(tcp::socket(w.io), *w.client_tls);
  tcp::socket accepted(w.io);
  client.next_layer().connect(w.acceptor.local_endpoint());
  w.acceptor.accept(accepted);
  TlsStream server(std::move(accepted), *w.server_tls);
  error_code client_ec = asio::error::would_block, server_ec = asio::error::would_block;
  asio::co_spawn(w.io, handshake(client, asio::ssl::stream_base::client, client_ec), asio::detached);
  asio::co_spawn(w.io, handshake(server, asio::ssl::stream_base::server, server_ec), asio::detached);
  run(w.io, kHandshakeBound);
  check(!client_ec && !server_ec, "the TLS handshake on loopback failed");

  auto connection = Connection::make(std::move(server), Connection::Role::Server, [&session](auto stream) {
    session.requests.push_back(stream);
    if (session.tunnel_connects && stream->method() == "CONNECT") {
      stream->respond(200, true);
      asio::co_spawn(world().io, tunnel(std::move(stream)), asio::detached);
    } else {
      stream->respond(503, false);
    }
  });
  connection->start([&session] { ++session.closes; });

  std::vector<uint8_t> bytes(kPreface.begin(), kPreface.end());
  bytes.insert(bytes.end(), data + 1, data + size);
  asio::co_spawn(w.io, send(client, std::move(bytes)), asio::detached);
  asio::co_spawn(w.io, read_to_end(client), asio::detached);
  // Everything the frames lead to, until the session waits on the client; then the client's FIN.
  w.io.restart();
  while (w.io.poll() > 0) {
  }
  error_code ignored;
  client.next_layer().shutdown(tcp::socket::shutdown_send, ignored);
  const bool ended = run(w.io, kEndBound);
  check(session.closes == 1, "the server did not end the connection after the client's FIN");
  check(ended, "a coroutine of the session still waits after the connection ended");

  connection->close();
  check(session.closes == 1, "on_close ran again on close()");
  check(connection->active_streams() == 0, "streams left after close()");
  for (const auto& stream : session.requests) {
    check(!stream->method().empty(), "a request without :method reached the handler");
    check(stream->closed(), "a stream is still open after its connection closed");
  }
  session.requests.clear();
  const std::weak_ptr<Connection> weak = connection;
  connection.reset();
  check(weak.expired(), "the Connection outlives its last outside reference");
  client.next_layer().close(ignored);
  return 0;
}
