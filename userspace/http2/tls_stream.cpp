// TLS through memory BIOs, many records per syscall (see TlsStream in include/zmesh/http2.h).
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <climits>
#include <stdexcept>

#include "zmesh/http2.h"

namespace zmesh::http2 {

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr size_t kReceiveChunk = 256 << 10;   // ciphertext per receive syscall, at most
constexpr size_t kSmallChunk = 17 << 10;      // before the peer is authenticated, and while little comes: one record
// Buffers grow to the largest burst they carried. Once a direction is quiet again (kQuietRuns
// small receives, or small sends, in a row: one small read amid a bulk transfer does not count)
// and its buffers are empty, anything above this goes back: a pooled connection idle after
// 1,000 streams holds tens of KiB, not 1 MiB (receive buffer, both memory BIOs, the send copy).
constexpr size_t kKeepWhenQuiet = 64 << 10;
constexpr unsigned kQuietRuns = 4;

BIO* new_memory_bio() {
  BIO* bio = BIO_new(BIO_s_mem());
  // An empty memory BIO reads as "retry later", not as end of file.
  if (bio) BIO_set_mem_eof_return(bio, -1);
  return bio;
}

// Whether `bio` is empty and its buffer has grown above kKeepWhenQuiet.
bool grown_and_empty(BIO* bio) {
  BUF_MEM* memory = nullptr;
  return BIO_ctrl_pending(bio) == 0 && BIO_get_mem_ptr(bio, &memory) > 0 && memory && memory->max > kKeepWhenQuiet;
}

}  // namespace

TlsStream::TlsStream(asio::ip::tcp::socket socket, asio::ssl::context& context)
    : socket_(std::move(socket)), ssl_(SSL_new(context.native_handle())) {
  if (!ssl_) throw std::runtime_error("SSL_new failed");
  in_ = new_memory_bio();
  out_ = new_memory_bio();
  if (!in_ || !out_) {
    BIO_free(in_);
    BIO_free(out_);
    SSL_free(ssl_);
    throw std::runtime_error("BIO_new failed");
  }
  SSL_set_bio(ssl_, in_, out_);
}

TlsStream::TlsStream(TlsStream&& other) noexcept
    : socket_(std::move(other.socket_)),
      ssl_(std::exchange(other.ssl_, nullptr)),
      in_(std::exchange(other.in_, nullptr)),
      out_(std::exchange(other.out_, nullptr)),
      received_(std::move(other.received_)),
      sending_(std::move(other.sending_)),
      quiet_receives_(other.quiet_receives_),
      quiet_sends_(other.quiet_sends_) {}

TlsStream::~TlsStream() { SSL_free(ssl_); }  // frees both BIOs

bool TlsStream::output_pending() const { return out_ && BIO_ctrl_pending(out_) > 0; }

error_code TlsStream::ssl_error(int ssl_result) const {
  const int kind = SSL_get_error(ssl_, ssl_result);
  error_code ec = asio::ssl::error::unspecified_system_error;
  if (kind == SSL_ERROR_ZERO_RETURN) ec = asio::error::eof;
  else if (const unsigned long queued = ERR_get_error())
    ec = error_code(static_cast<int>(queued), asio::error::get_ssl_category());
  ERR_clear_error();  // the rest of the queue must not be read as the next call's error
  return ec;
}

error_code TlsStream::take_in(size_t n) {
  // A memory BIO copies; it fails only when it cannot allocate.
  if (BIO_write(in_, received_.data(), static_cast<int>(n)) != static_cast<int>(n)) return asio::error::no_memory;
  return {};
}

asio::awaitable<error_code> TlsStream::flush() {
  size_t last = 0;
  while (const size_t pending = BIO_ctrl_pending(out_)) {
    // Moved out of the BIO first: a read may append to it while this write is under way.
    sending_.resize(pending);
    BIO_read(out_, sending_.data(), static_cast<int>(pending));
    auto [ec, written] = co_await asio::async_write(socket_, asio::buffer(sending_), use_tuple);
    if (ec) co_return ec;
    last = pending;
  }
  quiet_sends_ = last < kKeepWhenQuiet / 4 ? quiet_sends_ + 1 : 0;
  if (quiet_sends_ >= kQuietRuns) release_grown_buffers(sending_, out_, false);
  co_return error_code{};
}

void TlsStream::release_grown_buffers(std::vector<uint8_t>& copy, BIO*& bio, bool inbound) {
  if (copy.capacity() > kKeepWhenQuiet) std::vector<uint8_t>(inbound ? kSmallChunk : 0).swap(copy);
  if (!grown_and_empty(bio)) return;
  BIO* fresh = new_memory_bio();
  if (!fresh) return;  // keeps the grown one
  if (inbound) SSL_set0_rbio(ssl_, fresh);  // frees the old one
  else SSL_set0_wbio(ssl_, fresh);
  bio = fresh;
}

asio::awaitable<void> TlsStream::handshake(asio::ssl::stream_base::handshake_type side) {
  if (side == asio::ssl::stream_base::client) SSL_set_connect_state(ssl_);
  else SSL_set_accept_state(ssl_);
  received_.resize(kSmallChunk);  // a client that never authenticates costs 17 KiB, not 256
  for (;;) {
    ERR_clear_error();
    const int result = SSL_do_handshake(ssl_);
    const int kind = result == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, result);
    const error_code failure = kind == SSL_ERROR_NONE || kind == SSL_ERROR_WANT_READ ? error_code{} : ssl_error(result);
    // Our flight, or the alert that tells the peer why we give up.
    const error_code sent = co_await flush();
    if (failure) throw boost::system::system_error(failure);
    if (sent) throw boost::system::system_error(sent);
    if (result == 1) co_return;
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(received_), use_tuple);
    if (ec == asio::error::eof) throw boost::system::system_error(asio::ssl::error::stream_truncated);
    if (ec) throw boost::system::system_error(ec);
    if (auto taken = take_in(n)) throw boost::system::system_error(taken);
  }
}

asio::awaitable<std::pair<error_code, size_t>> TlsStream::read_some(asio::mutable_buffer buffer) {
  auto* into = static_cast<uint8_t*>(buffer.data());
  const size_t size = std::min(buffer.size(), static_cast<size_t>(INT_MAX));
  if (size == 0) co_return std::pair{error_code{}, size_t{0}};
  if (received_.empty()) received_.resize(kSmallChunk);
  for (;;) {
    // Everything already decrypted, up to the buffer: one call for many records.
    size_t total = 0;
    int result = 1;
    ERR_clear_error();
    while (total < size) {
      result = SSL_read(ssl_, into + total, static_cast<int>(size - total));
      if (result <= 0) break;
      total += static_cast<size_t>(result);
    }
    if (total > 0) co_return std::pair{error_code{}, total};
    if (SSL_get_error(ssl_, result) != SSL_ERROR_WANT_READ) co_return std::pair{ssl_error(result), size_t{0}};
    // What the records read produced for the peer (a KeyUpdate answer): back to the caller
    // with nothing, so its writer sends it now.
    if (output_pending()) co_return std::pair{error_code{}, size_t{0}};
    // Everything received is decrypted: a quiet connection gives back what a burst grew.
    if (quiet_receives_ >= kQuietRuns) release_grown_buffers(received_, in_, true);
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(received_), use_tuple);
    if (ec == asio::error::eof) co_return std::pair{error_code(asio::ssl::error::stream_truncated), size_t{0}};
    if (ec) co_return std::pair{ec, size_t{0}};
    if (auto taken = take_in(n)) co_return std::pair{taken, size_t{0}};
    // A read that filled the buffer: more is coming, take up to 256 KiB per syscall from now on.
    if (n == received_.size() && n < kReceiveChunk) received_.resize(kReceiveChunk);
    quiet_receives_ = n < kSmallChunk / 4 ? quiet_receives_ + 1 : 0;
  }
}

error_code TlsStream::encrypt(asio::const_buffer buffer) {
  if (buffer.size() == 0) return {};
  if (buffer.size() > INT_MAX) return asio::error::message_size;
  ERR_clear_error();
  // A memory BIO never pushes back: every record of the buffer is written here.
  const int result = SSL_write(ssl_, buffer.data(), static_cast<int>(buffer.size()));
  return result <= 0 ? ssl_error(result) : error_code{};
}

asio::awaitable<error_code> TlsStream::write(asio::const_buffer buffer) {
  if (auto ec = encrypt(buffer)) co_return ec;
  co_return co_await flush();
}

}  // namespace zmesh::http2
