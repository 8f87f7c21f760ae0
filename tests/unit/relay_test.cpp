// The socket-to-socket relay (userspace/proxy/copy.cpp) on real loopback TCP: bytes both ways
// through splice(2), half-closes and resets carried across, and the copy it falls back to when
// no pipe can be made.
//
//   client ── a ══ relay (splice: a -> pipe -> b, b -> pipe -> a) ══ b ── server
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <future>
#include <thread>
#include <vector>

#include "copy.h"
#include "../support/eventually.h"

namespace zmesh::proxy {
namespace {

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(i * 31 + seed + i / 4096);
  return out;
}

// Two connected pairs over loopback; the relay joins a and b on its own thread. The test
// drives client and server with blocking calls.
class RelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tcp::acceptor listener(peers_, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    client_.connect(listener.local_endpoint());
    listener.accept(a_);
    b_.connect(listener.local_endpoint());
    listener.accept(server_);
  }
  void TearDown() override {
    if (thread_.joinable()) thread_.join();
  }
  void start() {
    auto done = std::make_shared<std::promise<RelayResult>>();
    result_ = done->get_future();
    asio::co_spawn(io_, [this, done]() -> awaitable<void> { done->set_value(co_await relay(a_, b_)); }, asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  RelayResult result() {
    EXPECT_EQ(result_.wait_for(std::chrono::seconds(20)), std::future_status::ready) << "the relay never ended";
    return result_.get();
  }
  // Sends `bytes` from `from` while reading them at `to` (both blocking, the send on a
  // thread: the relay holds only what the two sockets' buffers and one pipe hold).
  static void pass(tcp::socket& from, tcp::socket& to, const std::vector<uint8_t>& bytes) {
    std::thread sender([&] { asio::write(from, asio::buffer(bytes)); });
    std::vector<uint8_t> got(bytes.size());
    asio::read(to, asio::buffer(got));
    sender.join();
    EXPECT_TRUE(got == bytes) << "the bytes changed on the way";
  }
  static bool at_eof(tcp::socket& s) {
    uint8_t byte;
    error_code ec;
    s.read_some(asio::buffer(&byte, 1), ec);
    return ec == asio::error::eof;
  }

  asio::io_context peers_, io_;
  tcp::socket client_{peers_}, server_{peers_}, a_{io_}, b_{io_};
  std::thread thread_;
  std::future<RelayResult> result_;
};

TEST_F(RelayTest, BytesAndHalfClosesCrossBothWays) {
  start();
  const auto request = pattern(8 << 20, 1), response = pattern(3 << 20, 2);
  pass(client_, server_, request);
  client_.shutdown(tcp::socket::shutdown_send);
  EXPECT_TRUE(at_eof(server_)) << "the client's FIN did not reach the server";
  pass(server_, client_, response);  // the other direction still open after the half-close
  server_.shutdown(tcp::socket::shutdown_send);
  EXPECT_TRUE(at_eof(client_));
  const auto r = result();
  EXPECT_EQ(r.sent, request.size());
  EXPECT_EQ(r.received, response.size());
  EXPECT_EQ(r.error, "");
}

TEST_F(RelayTest, AResetOnOneSideResetsTheOther) {
  start();
  pass(client_, server_, pattern(100000, 3));
  const linger abort_on_close{1, 0};
  ASSERT_EQ(setsockopt(server_.native_handle(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close), 0);
  server_.close();
  uint8_t byte;
  error_code ec;
  client_.read_some(asio::buffer(&byte, 1), ec);
  EXPECT_EQ(ec, asio::error::connection_reset) << ec.message();
  EXPECT_NE(result().error, "");
}

// splice(2) into a socket whose peer reset it raises SIGPIPE once the reset's error has been
// read (splice has no MSG_NOSIGNAL); the relay must end with an error, not the process. Here
// the error is read before the relay starts, as its reset watch may have read it.
TEST_F(RelayTest, SplicingIntoAResetSocketEndsTheRelayNotTheProcess) {
  const linger abort_on_close{1, 0};
  ASSERT_EQ(setsockopt(server_.native_handle(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close), 0);
  server_.close();
  ASSERT_TRUE(test::eventually([&] {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(b_.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len);
    return err == ECONNRESET;  // read, and so cleared
  }));
  asio::write(client_, asio::buffer(pattern(65536, 6)));
  start();
  EXPECT_NE(result().error, "");
}

TEST_F(RelayTest, WithNoDescriptorLeftForAPipeItCopies) {
  // No descriptor above those open now: pipe2 fails with EMFILE inside the relay.
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &before), 0);
  const int probe = dup(0);
  ASSERT_GE(probe, 0);
  close(probe);
  rlimit tight = before;
  tight.rlim_cur = static_cast<rlim_t>(probe);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
  int fds[2];
  EXPECT_NE(pipe(fds), 0) << "the limit leaves room for a pipe";
  start();
  pass(client_, server_, pattern(2 << 20, 4));
  pass(server_, client_, pattern(1 << 20, 5));
  client_.shutdown(tcp::socket::shutdown_send);
  server_.shutdown(tcp::socket::shutdown_send);
  const auto r = result();
  setrlimit(RLIMIT_NOFILE, &before);
  EXPECT_EQ(r.sent, 2u << 20);
  EXPECT_EQ(r.received, 1u << 20);
  EXPECT_EQ(r.error, "");
}

}  // namespace
}  // namespace zmesh::proxy
