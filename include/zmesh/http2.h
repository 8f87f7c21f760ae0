// HBONE's HTTP/2 layer on nghttp2 (no hand-written framing): one Connection per TLS connection,
// many Streams per Connection, each Stream an HTTP/2 CONNECT tunnel carrying one TCP
// connection's bytes. Flow control is real backpressure: a Stream's received bytes are
// acknowledged to the peer (WINDOW_UPDATE) only once the caller has written them on, and
// Stream::write waits while too much is queued.
//
// Threading: a Connection and its Streams live on one executor (strand or single-threaded
// io_context); every member is called from coroutines on that executor.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

struct nghttp2_session;

namespace zmesh::http2 {

namespace asio = boost::asio;
using error_code = boost::system::error_code;

// TLS over a TCP socket through memory BIOs we own, instead of Asio's ssl::stream. Asio moves
// ciphertext through a 17 KiB buffer: one send and about two receives per 16 KiB record. On
// the veth and bridge paths between pods and nodes each syscall costs the whole kernel path
// (16 KiB writes carry 4.7 Gbit/s where 128 KiB writes carry 18.6 here), so this stream
// encrypts everything a write is given (up to 256 KiB from the HTTP/2 writer) and sends it in
// one go, and receives up to 256 KiB per syscall. Errors are Asio's (ssl category,
// ssl::error::stream_truncated), so logs and handshake reasons read as before. One executor;
// one reader and one writer at a time (they may interleave).
class TlsStream {
 public:
  TlsStream(asio::ip::tcp::socket socket, asio::ssl::context& context);
  TlsStream(TlsStream&& other) noexcept;
  TlsStream& operator=(TlsStream&&) = delete;
  ~TlsStream();

  // Throws system_error (the handshake's error, or stream_truncated if the peer hung up).
  asio::awaitable<void> handshake(asio::ssl::stream_base::handshake_type side);
  // Some plaintext (as much as is decrypted, up to the buffer); eof after the peer's
  // close_notify, stream_truncated when the TCP connection ended without one. 0 bytes and no
  // error when reading produced output for the peer (output_pending(): write to send it).
  // `buffer` is written only after the last suspension, just before returning: a buffer that
  // the thread's connections share is safe if the caller uses what it got before suspending.
  asio::awaitable<std::pair<error_code, size_t>> read_some(asio::mutable_buffer buffer);
  // Encrypts all of `buffer` and sends it with whatever else is pending (an empty buffer just
  // sends what the reader produced, e.g. a KeyUpdate answer).
  asio::awaitable<error_code> write(asio::const_buffer buffer);
  // The two halves of write(): encrypt (into the output, nothing sent), then send all of the
  // output in one go. A writer encrypts straight from where its bytes are, many times, and
  // sends once.
  error_code encrypt(asio::const_buffer buffer);
  asio::awaitable<error_code> flush();
  bool output_pending() const;

  SSL* native_handle() { return ssl_; }
  asio::ip::tcp::socket& next_layer() { return socket_; }
  asio::any_io_executor get_executor() { return socket_.get_executor(); }

 private:
  error_code ssl_error(int ssl_result) const;
  error_code take_in(size_t n);  // the first n received bytes into OpenSSL's input
  // One direction's buffers back to their small size, once the connection is quiet and they
  // are empty: `copy` (received_ or sending_), and `bio` replaced by a fresh memory BIO.
  void release_grown_buffers(std::vector<uint8_t>& copy, BIO*& bio, bool inbound);

  asio::ip::tcp::socket socket_;
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;   // ciphertext received, for OpenSSL to read (owned by ssl_)
  BIO* out_ = nullptr;  // ciphertext OpenSSL wrote, to send (owned by ssl_)
  std::vector<uint8_t> received_, sending_;
  unsigned quiet_receives_ = 0, quiet_sends_ = 0;  // small receive syscalls (sends) in a row
};

// Wakes one coroutine waiting on one executor; a notify with nobody waiting is remembered.
class Signal {
 public:
  explicit Signal(const asio::any_io_executor& executor);
  asio::awaitable<void> wait();
  void notify();

 private:
  asio::steady_timer timer_;
  bool pending_ = false;
};

struct Settings {
  static constexpr uint32_t kStreamWindow = 4 << 20;       // per stream: 4 MiB in flight
  static constexpr uint32_t kConnectionWindow = 16 << 20;  // per connection
  static constexpr uint32_t kMaxConcurrentStreams = 1000;
  static constexpr size_t kSendBuffer = 1 << 20;           // queued per stream before write() waits
  static constexpr size_t kMaxHeaderList = 16 << 10;       // larger request headers are refused
  static constexpr uint32_t kMaxFrame = 256 << 10;          // DATA frames up to this (fewer frames, less framing)
};

class Connection;

// One CONNECT tunnel. Shared by its Connection (until the stream closes) and its relay.
class Stream {
 public:
  // The next received chunk, handed over (no copy, and no buffer held while the stream is
  // idle); an empty chunk with no error = the peer half-closed (END_STREAM); an error when the
  // stream was reset or the connection failed.
  asio::awaitable<std::pair<error_code, std::vector<uint8_t>>> take_some();
  // Tells the peer `n` read bytes were delivered: opens the flow-control window for more.
  void consumed(size_t n);
  // Queues bytes for the peer; waits while the queue is over Settings::kSendBuffer.
  asio::awaitable<error_code> write(asio::const_buffer buf);
  // Half-close: END_STREAM once the queued bytes are sent.
  void close_write();
  // Abort both directions (RST_STREAM).
  void reset(uint32_t http2_error);
  // Server: answers this stream's request (see Connection::respond).
  void respond(int status, bool tunnel);

  int32_t id() const { return id_; }
  int status() const { return status_; }          // client: the response's :status
  const std::string& authority() const { return authority_; }  // server: the request's :authority
  const std::string& method() const { return method_; }        // server: the request's :method
  const std::string& forwarded() const { return forwarded_; }  // server: the request's forwarded header
  bool closed() const { return closed_; }
  uint32_t reset_code() const { return reset_code_; }  // when closed: 0 = clean
  ~Stream();  // gives the window of bytes never read back to the connection

 private:
  friend class Connection;
  Stream(std::weak_ptr<Connection> connection, const asio::any_io_executor& executor);

  std::weak_ptr<Connection> connection_;
  int32_t id_ = -1;
  int status_ = 0;
  std::string method_, authority_, forwarded_;
  bool reset_after_response_ = false;
  size_t header_bytes_ = 0;   // server: the request's header list so far, as RFC 9113 counts it
  bool headers_refused_ = false;  // server: over Settings::kMaxHeaderList, reset, never dispatched  // a refusal: RST once the response HEADERS are out
  // received, not yet taken
  std::deque<std::vector<uint8_t>> inbox_;
  bool remote_closed_ = false;
  // queued to send: chunks as written, the first one read from outbox_offset_
  std::deque<std::vector<uint8_t>> outbox_;
  size_t outbox_offset_ = 0;
  size_t outbox_bytes_ = 0;
  bool local_closed_ = false;
  bool deferred_ = false;
  bool closed_ = false;
  uint32_t reset_code_ = 0;
  Signal readable_, writable_, headers_;
};

// One HTTP/2 connection over TLS, client or server side.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  enum class Role { Client, Server };
  // Server: a request arrived. The handler must not block: it co_spawns its work and answers
  // with respond().
  using RequestHandler = std::function<void(std::shared_ptr<Stream>)>;

  static std::shared_ptr<Connection> make(TlsStream tls, Role role, RequestHandler on_request = {});
  ~Connection();

  // With an interval set before start(): a PING after `interval` without a byte from the
  // peer, and the connection closed (every stream failed) after twice that. A peer that
  // vanished (node gone, link cut) would otherwise hold its streams until TCP gives up,
  // which takes many minutes.
  void keep_alive(std::chrono::milliseconds interval) { keepalive_ = interval; }
  // Starts the read and write loops. `on_close` runs once when the connection ends.
  void start(std::function<void()> on_close = {});

  // Client: sends CONNECT `authority` with extra headers; returns once the response headers
  // arrived (stream->status()) or throws system_error when the stream or connection failed.
  using Headers = std::vector<std::pair<std::string, std::string>>;
  asio::awaitable<std::shared_ptr<Stream>> open(const std::string& authority, const Headers& headers);
  // Server: answers a request. With `tunnel` the stream stays open for data; otherwise it ends.
  void respond(Stream& stream, int status, bool tunnel);

  // Sends GOAWAY; open streams finish, new ones are refused. False when it was already draining
  // or closed (nothing sent).
  bool drain();
  // Closes the connection now; every stream fails.
  void close();

  bool usable() const;  // open, not draining, below the peer's stream limit
  size_t active_streams() const { return streams_.size(); }
  std::chrono::steady_clock::time_point idle_since() const { return idle_since_; }

 private:
  friend class Stream;
  struct Callbacks;
  Connection(TlsStream tls, Role role, RequestHandler on_request);
  asio::awaitable<void> read_loop();
  asio::awaitable<void> write_loop();
  asio::awaitable<void> keepalive_loop();
  void wake_writer() { want_write_.notify(); }
  void finish(const char* why);
  void stream_closed(Stream& stream, uint32_t http2_error);
  // The writer's encryption, in whole TLS records: `seal` encrypts the full records of
  // `data` in place and keeps what does not fill one in partial_ (topped up by the next
  // call); `seal_rest` encrypts that too and returns the first error since the last call.
  void seal(const uint8_t* data, size_t n);
  error_code seal_rest();

  TlsStream tls_;
  std::string peer_;  // the remote address, for the log
  Role role_;
  RequestHandler on_request_;
  std::function<void()> on_close_;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, std::shared_ptr<Stream>> streams_;
  Signal want_write_;
  std::vector<uint8_t> partial_;  // less than a TLS record, waiting for more (seal)
  error_code seal_error_;
  size_t sealed_bytes_ = 0;  // all bytes seal() took, and where the writer's batch began
  size_t batch_start_ = 0;
  bool closed_ = false;
  bool draining_ = false;
  bool bad_input_ = false;  // the peer sent what nghttp2 could not take: flush, then close
  std::chrono::steady_clock::time_point idle_since_ = std::chrono::steady_clock::now();
  std::chrono::milliseconds keepalive_{0};
  std::chrono::steady_clock::time_point last_read_ = std::chrono::steady_clock::now();
};

}  // namespace zmesh::http2
