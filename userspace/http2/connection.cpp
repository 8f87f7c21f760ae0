// HBONE's HTTP/2 on nghttp2 (see include/zmesh/http2.h). nghttp2 does every byte of framing;
// this file moves bytes between it, the TLS stream and the Streams, on one executor. (About 500
// lines: nghttp2's callbacks, the read and write loops and the Stream side share one session's
// state and its invariants; split, each part would reach into the others.)
#include <nghttp2/nghttp2.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include <algorithm>
#include <array>
#include <cstring>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "zmesh/http2.h"

namespace zmesh::http2 {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

nghttp2_nv header(const std::string& name, const std::string& value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

// Whether the awaiting coroutine was cancelled (by a parallel group or a caller).
asio::awaitable<bool> cancelled() {
  auto state = co_await asio::this_coro::cancellation_state;
  co_return state.cancelled() != asio::cancellation_type::none;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Signal

Signal::Signal(const asio::any_io_executor& executor) : timer_(executor, asio::steady_timer::time_point::max()) {}

asio::awaitable<void> Signal::wait() {
  if (!pending_) co_await timer_.async_wait(use_tuple);
  pending_ = false;
}

void Signal::notify() {
  pending_ = true;
  timer_.cancel();
}

// ---------------------------------------------------------------------------------------------
// Stream

Stream::Stream(std::weak_ptr<Connection> connection, const asio::any_io_executor& executor)
    : connection_(std::move(connection)), readable_(executor), writable_(executor), headers_(executor) {}

// Bytes received that nobody will read now: the stream ended cleanly, then its reader gave up
// (its socket was reset before it took them). Their connection window must come back, or every
// such stream shrinks the pooled connection's window until no stream on it can receive.
Stream::~Stream() {
  size_t unread = 0;
  for (const auto& chunk : inbox_) unread += chunk.size();
  if (unread == 0) return;
  if (auto connection = connection_.lock(); connection && !connection->closed_) {
    nghttp2_session_consume_connection(connection->session_, unread);
    connection->wake_writer();
  }
}

asio::awaitable<std::pair<error_code, std::vector<uint8_t>>> Stream::take_some() {
  for (;;) {
    if (!inbox_.empty()) {
      std::vector<uint8_t> chunk = std::move(inbox_.front());
      inbox_.pop_front();
      co_return std::pair{error_code{}, std::move(chunk)};
    }
    if (reset_code_ != 0 || (closed_ && !remote_closed_))
      co_return std::pair{error_code(asio::error::connection_reset), std::vector<uint8_t>{}};
    if (remote_closed_) co_return std::pair{error_code{}, std::vector<uint8_t>{}};
    co_await readable_.wait();
    if (co_await cancelled()) co_return std::pair{error_code(asio::error::operation_aborted), std::vector<uint8_t>{}};
  }
}

void Stream::consumed(size_t n) {
  auto connection = connection_.lock();
  if (!connection || connection->closed_) return;
  // A closed stream's window is gone, but the connection's must still be given back.
  if (closed_) nghttp2_session_consume_connection(connection->session_, n);
  else nghttp2_session_consume(connection->session_, id_, n);
  connection->wake_writer();
}

asio::awaitable<error_code> Stream::write(asio::const_buffer buf) {
  auto connection = connection_.lock();
  if (!connection || closed_ || local_closed_) co_return asio::error::broken_pipe;
  const auto* bytes = static_cast<const uint8_t*>(buf.data());
  outbox_.emplace_back(bytes, bytes + buf.size());
  outbox_bytes_ += buf.size();
  if (deferred_) {
    deferred_ = false;
    nghttp2_session_resume_data(connection->session_, id_);
  }
  connection->wake_writer();
  while (outbox_bytes_ > Settings::kSendBuffer && !closed_) {
    co_await writable_.wait();
    if (co_await cancelled()) co_return asio::error::operation_aborted;
  }
  co_return closed_ && reset_code_ ? asio::error::connection_reset : error_code{};
}

void Stream::close_write() {
  auto connection = connection_.lock();
  if (!connection || closed_ || local_closed_) return;
  local_closed_ = true;
  if (deferred_) {
    deferred_ = false;
    nghttp2_session_resume_data(connection->session_, id_);
  }
  connection->wake_writer();
}

void Stream::reset(uint32_t http2_error) {
  auto connection = connection_.lock();
  if (!connection || connection->closed_ || closed_) return;
  nghttp2_submit_rst_stream(connection->session_, NGHTTP2_FLAG_NONE, id_, http2_error);
  connection->wake_writer();
}

void Stream::respond(int status, bool tunnel) {
  if (auto connection = connection_.lock()) connection->respond(*this, status, tunnel);
}

// ---------------------------------------------------------------------------------------------
// nghttp2 callbacks: user_data is the Connection.

constexpr size_t kBatch = 256 << 10;  // the writer encrypts this much, then sends it in one go

struct Connection::Callbacks {
  static Connection& self(void* user_data) { return *static_cast<Connection*>(user_data); }

  static std::shared_ptr<Stream> find(Connection& c, int32_t id) {
    auto it = c.streams_.find(id);
    return it == c.streams_.end() ? nullptr : it->second;
  }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    Connection& c = self(user_data);
    if (c.role_ == Role::Server && frame->hd.type == NGHTTP2_HEADERS &&
        frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      auto stream = std::shared_ptr<Stream>(new Stream(c.weak_from_this(), c.tls_.get_executor()));
      stream->id_ = frame->hd.stream_id;
      c.streams_[stream->id_] = stream;
    }
    return 0;
  }

  static int on_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t, void* user_data) {
    Connection& c = self(user_data);
    auto stream = find(c, frame->hd.stream_id);
    if (!stream || stream->headers_refused_) return 0;
    // We advertise SETTINGS_MAX_HEADER_LIST_SIZE; nghttp2 leaves enforcing it to us. A CONNECT
    // needs a few hundred bytes: a bigger list is an attack on our memory, and ends the stream.
    stream->header_bytes_ += namelen + valuelen + 32;
    if (c.role_ == Role::Server && stream->header_bytes_ > Settings::kMaxHeaderList) {
      spdlog::warn("http2: stream {} from {}: request headers over {} bytes, reset", stream->id_, c.peer_,
                   Settings::kMaxHeaderList);
      stream->headers_refused_ = true;
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream->id_, NGHTTP2_ENHANCE_YOUR_CALM);
      return 0;
    }
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":method") stream->method_ = v;
    else if (n == ":authority") stream->authority_ = v;
    else if (n == "forwarded") stream->forwarded_ = v;
    else if (n == ":status") stream->status_ = std::atoi(std::string(v).c_str());
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    Connection& c = self(user_data);
    auto stream = find(c, frame->hd.stream_id);
    if (!stream) return 0;
    if (stream->headers_refused_) return 0;
    if (frame->hd.type == NGHTTP2_HEADERS) {
      if (c.role_ == Role::Server && frame->headers.cat == NGHTTP2_HCAT_REQUEST && c.on_request_)
        c.on_request_(stream);
      if (c.role_ == Role::Client) stream->headers_.notify();
    }
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      stream->remote_closed_ = true;
      stream->readable_.notify();
    }
    return 0;
  }

  // A refusal's RST_STREAM must follow its response: queued together, nghttp2 would send the
  // RST first and drop the HEADERS.
  static int on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR) {
      // The peer broke the protocol or a limit (a stream flood, rapid resets, a header block
      // too big): say who and why, since the connection ends here.
      const auto& goaway = frame->goaway;
      spdlog::warn("http2: ending the connection with {}: {}{}{} (after stream {})", self(user_data).peer_,
                   nghttp2_http2_strerror(goaway.error_code), goaway.opaque_data_len ? ": " : "",
                   std::string_view(reinterpret_cast<const char*>(goaway.opaque_data), goaway.opaque_data_len),
                   goaway.last_stream_id);
    }
    auto stream = find(self(user_data), frame->hd.stream_id);
    if (stream && frame->hd.type == NGHTTP2_HEADERS && stream->reset_after_response_)
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
  }

  static int on_data_chunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data, size_t len,
                           void* user_data) {
    auto stream = find(self(user_data), id);
    if (!stream) {
      nghttp2_session_consume_connection(session, len);
      return 0;
    }
    if (len == 0) return 0;  // an empty chunk would read as the end of the stream
    if (stream->reset_after_response_) {  // a refused stream: nobody will read it
      nghttp2_session_consume_connection(session, len);
      return 0;
    }
    stream->inbox_.emplace_back(data, data + len);
    stream->readable_.notify();
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t http2_error, void* user_data) {
    Connection& c = self(user_data);
    if (auto stream = find(c, id)) c.stream_closed(*stream, http2_error);
    return 0;
  }

  // Data source of a stream: its outbox. Deferred while empty; END_STREAM after close_write().
  // The bytes are not copied here (NGHTTP2_DATA_FLAG_NO_COPY): send_data encrypts them
  // straight from the outbox.
  static ssize_t read_data(nghttp2_session*, int32_t, uint8_t*, size_t length, uint32_t* flags,
                           nghttp2_data_source* source, void*) {
    auto* stream = static_cast<Stream*>(source->ptr);
    if (stream->outbox_bytes_ == 0 && !stream->local_closed_) {
      stream->deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    const size_t n = std::min(length, stream->outbox_bytes_);
    if (n > 0) *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (stream->outbox_bytes_ == n && stream->local_closed_) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  // The DATA frame read_data sized: its header, then `length` bytes taken off the outbox
  // (and padding, which zmesh never asks for but a frame may carry), into the TLS records.
  static int send_data(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                       nghttp2_data_source* source, void* user_data) {
    Connection& c = self(user_data);
    // A full batch goes out first; nghttp2 calls again with the same frame after (mem_send
    // returns 0 meanwhile).
    if (c.sealed_bytes_ - c.batch_start_ >= kBatch) return NGHTTP2_ERR_WOULDBLOCK;
    auto* stream = static_cast<Stream*>(source->ptr);
    c.seal(framehd, 9);
    const size_t pad = frame->data.padlen;
    if (pad > 0) {
      const uint8_t pad_length = static_cast<uint8_t>(pad - 1);
      c.seal(&pad_length, 1);
    }
    size_t left = length;
    while (left > 0 && !stream->outbox_.empty()) {
      auto& front = stream->outbox_.front();
      const size_t take = std::min(left, front.size() - stream->outbox_offset_);
      c.seal(front.data() + stream->outbox_offset_, take);
      left -= take;
      stream->outbox_offset_ += take;
      if (stream->outbox_offset_ == front.size()) {
        stream->outbox_.pop_front();
        stream->outbox_offset_ = 0;
      }
    }
    if (pad > 1) {
      static const std::vector<uint8_t> zeros(256);
      c.seal(zeros.data(), pad - 1);
    }
    stream->outbox_bytes_ -= length - left;
    stream->writable_.notify();
    // Bytes missing from the outbox cannot be: the frame would be short, the connection broken.
    return left == 0 && !c.seal_error_ ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
  }

  // How much a DATA frame may carry: as much as the windows and the peer's frame limit allow.
  static ssize_t read_length(nghttp2_session*, uint8_t, int32_t, int32_t session_window, int32_t stream_window,
                             uint32_t remote_max_frame, void*) {
    return std::min<ssize_t>({session_window, stream_window, static_cast<ssize_t>(remote_max_frame),
                              static_cast<ssize_t>(Settings::kMaxFrame)});
  }
};

// ---------------------------------------------------------------------------------------------
// Connection

std::shared_ptr<Connection> Connection::make(TlsStream tls, Role role, RequestHandler on_request) {
  return std::shared_ptr<Connection>(new Connection(std::move(tls), role, std::move(on_request)));
}

Connection::Connection(TlsStream tls, Role role, RequestHandler on_request)
    : tls_(std::move(tls)), role_(role), on_request_(std::move(on_request)), want_write_(tls_.get_executor()) {
  error_code ec;
  const auto remote = tls_.next_layer().remote_endpoint(ec);
  peer_ = ec ? "a peer already gone" : (std::ostringstream() << remote).str();
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, Callbacks::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, Callbacks::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, Callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, Callbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, Callbacks::on_frame_send);
  nghttp2_session_callbacks_set_data_source_read_length_callback(callbacks, Callbacks::read_length);
  nghttp2_session_callbacks_set_send_data_callback(callbacks, Callbacks::send_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, Callbacks::on_stream_close);
  nghttp2_option* option = nullptr;
  nghttp2_option_new(&option);
  // Windows open only as the relay delivers bytes (Stream::consumed): backpressure end to end.
  nghttp2_option_set_no_auto_window_update(option, 1);
  nghttp2_option_set_max_outbound_ack(option, 1000);  // a SETTINGS/PING flood ends the connection
  // A closed stream is freed at once, not kept for the priority tree (RFC 9113 deprecates it;
  // we send no priorities): a pooled connection after 1,000 streams holds none of them.
  nghttp2_option_set_no_closed_streams(option, 1);
  if (role == Role::Server) nghttp2_session_server_new2(&session_, callbacks, this, option);
  else nghttp2_session_client_new2(&session_, callbacks, this, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);

  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, Settings::kMaxConcurrentStreams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, Settings::kStreamWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(Settings::kMaxHeaderList)},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, Settings::kMaxFrame},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, Settings::kConnectionWindow);
}

Connection::~Connection() { nghttp2_session_del(session_); }

void Connection::start(std::function<void()> on_close) {
  on_close_ = std::move(on_close);
  auto self = shared_from_this();
  asio::co_spawn(tls_.get_executor(), [self]() { return self->read_loop(); }, asio::detached);
  asio::co_spawn(tls_.get_executor(), [self]() { return self->write_loop(); }, asio::detached);
  if (keepalive_.count() > 0)
    asio::co_spawn(tls_.get_executor(), [self]() { return self->keepalive_loop(); }, asio::detached);
}

asio::awaitable<void> Connection::keepalive_loop() {
  auto self = shared_from_this();
  asio::steady_timer timer(tls_.get_executor());
  while (!closed_) {
    timer.expires_after(keepalive_);
    co_await timer.async_wait(use_tuple);
    if (closed_) break;
    const auto silent = std::chrono::steady_clock::now() - last_read_;
    if (silent >= 2 * keepalive_) {
      spdlog::warn("http2: no byte from the peer for {} ms, not even a PING answer: closing the connection and its "
                   "{} streams",
                   std::chrono::duration_cast<std::chrono::milliseconds>(silent).count(), streams_.size());
      finish("peer silent");
      break;
    }
    if (silent >= keepalive_) {
      nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr);
      wake_writer();
    }
  }
}

asio::awaitable<void> Connection::read_loop() {
  auto self = shared_from_this();
  // One plaintext buffer per thread serves every connection on it: TlsStream::read_some writes
  // into it only after its last co_await, and nghttp2 consumes it below before anything else
  // runs on this thread. A connection then carries no 64 KiB in its coroutine frame.
  thread_local std::vector<uint8_t> buf(64 << 10);
  while (!closed_) {
    auto [ec, n] = co_await tls_.read_some(asio::buffer(buf));
    last_read_ = std::chrono::steady_clock::now();
    if (ec) {
      finish(ec == asio::error::eof || ec == asio::ssl::error::stream_truncated ? "peer closed" : "read failed");
      break;
    }
    const ssize_t rv = nghttp2_session_mem_recv(session_, buf.data(), n);
    if (rv < 0) {
      // Not HTTP/2, or broken beyond repair: nghttp2 may have queued a GOAWAY; the writer sends
      // it and then ends the connection. Nothing more is read (a peer that sent garbage and
      // went quiet must not hold the connection open).
      spdlog::warn("http2: bad input from {}: {}", peer_, nghttp2_strerror(static_cast<int>(rv)));
      draining_ = true;
      bad_input_ = true;
      wake_writer();
      break;
    }
    wake_writer();
  }
}

void Connection::seal(const uint8_t* data, size_t n) {
  constexpr size_t kRecord = 16 << 10;
  sealed_bytes_ += n;
  if (!partial_.empty()) {  // top up the record begun before
    const size_t take = std::min(n, kRecord - partial_.size());
    partial_.insert(partial_.end(), data, data + take);
    data += take;
    n -= take;
    if (partial_.size() < kRecord) return;
    if (!seal_error_) seal_error_ = tls_.encrypt(asio::buffer(partial_));
    partial_.clear();
  }
  const size_t whole = n / kRecord * kRecord;
  if (whole && !seal_error_) seal_error_ = tls_.encrypt(asio::buffer(data, whole));
  partial_.insert(partial_.end(), data + whole, data + n);
}

error_code Connection::seal_rest() {
  if (!partial_.empty() && !seal_error_) seal_error_ = tls_.encrypt(asio::buffer(partial_));
  partial_.clear();
  return std::exchange(seal_error_, error_code{});
}

asio::awaitable<void> Connection::write_loop() {
  auto self = shared_from_this();
  // Frames are encrypted where they are, in whole TLS records (16 KiB): DATA payload straight
  // from the streams' queues (send_data), the other frames from nghttp2's buffer; what does
  // not fill a record (small frames, a frame's head and tail) is gathered until it does, so
  // records stay full. Up to kBatch of frames, then everything encrypted goes out with one
  // send.
  while (!closed_) {
    batch_start_ = sealed_bytes_;
    while (sealed_bytes_ - batch_start_ < kBatch && !seal_error_) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) {
        finish("nghttp2 send failed");
        break;
      }
      if (n == 0) break;
      seal(data, static_cast<size_t>(n));
    }
    const error_code sealed = seal_rest();
    if (closed_) break;
    if (sealed) {
      finish("encrypting failed");
      break;
    }
    if (tls_.output_pending()) {
      if (co_await tls_.flush()) finish("write failed");
      continue;
    }
    if (bad_input_) {
      finish("bad HTTP/2 from peer");
      break;
    }
    if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) {
      finish("session ended");
      break;
    }
    co_await want_write_.wait();
  }
}

void Connection::stream_closed(Stream& stream, uint32_t http2_error) {
  stream.closed_ = true;
  stream.reset_code_ = http2_error;
  // Bytes received and never to be read: give the connection window back.
  size_t unread = 0;
  if (http2_error != 0) {
    for (const auto& chunk : stream.inbox_) unread += chunk.size();
    stream.inbox_.clear();
    if (unread) nghttp2_session_consume_connection(session_, unread);
  }
  stream.readable_.notify();
  stream.writable_.notify();
  stream.headers_.notify();
  streams_.erase(stream.id_);
  if (streams_.empty()) idle_since_ = std::chrono::steady_clock::now();
}

void Connection::finish(const char* why) {
  if (closed_) return;
  closed_ = true;
  spdlog::debug("http2: connection closed ({}), {} streams failed", why, streams_.size());
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, stream] : streams) {
    stream->closed_ = true;
    if (!stream->reset_code_) stream->reset_code_ = NGHTTP2_CANCEL;
    stream->readable_.notify();
    stream->writable_.notify();
    stream->headers_.notify();
  }
  error_code ignored;
  tls_.next_layer().close(ignored);
  want_write_.notify();
  if (on_close_) std::exchange(on_close_, nullptr)();
}

asio::awaitable<std::shared_ptr<Stream>> Connection::open(const std::string& authority, const Headers& headers) {
  auto self = shared_from_this();
  if (!usable()) throw boost::system::system_error(asio::error::not_connected, "http2 connection is not usable");
  auto stream = std::shared_ptr<Stream>(new Stream(weak_from_this(), tls_.get_executor()));
  const std::string method_name = ":method", method = "CONNECT", authority_name = ":authority";
  std::vector<nghttp2_nv> nva{header(method_name, method), header(authority_name, authority)};
  for (const auto& [name, value] : headers) nva.push_back(header(name, value));
  nghttp2_data_provider provider{};
  provider.source.ptr = stream.get();
  provider.read_callback = Callbacks::read_data;
  const int32_t id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), &provider, nullptr);
  if (id < 0) throw boost::system::system_error(asio::error::no_buffer_space, nghttp2_strerror(id));
  stream->id_ = id;
  stream->authority_ = authority;
  streams_[id] = stream;
  wake_writer();
  while (stream->status_ == 0 && !stream->closed_) {
    co_await stream->headers_.wait();
    if (co_await cancelled()) {
      stream->reset(NGHTTP2_CANCEL);
      throw boost::system::system_error(asio::error::operation_aborted);
    }
  }
  if (stream->status_ == 0)
    throw boost::system::system_error(asio::error::connection_reset, "HBONE stream closed before a response");
  co_return stream;
}

void Connection::respond(Stream& stream, int status, bool tunnel) {
  if (closed_ || stream.closed_) return;
  const std::string name = ":status", code = std::to_string(status);
  nghttp2_nv nva[] = {header(name, code)};
  if (tunnel) {
    nghttp2_data_provider provider{};
    provider.source.ptr = &stream;
    provider.read_callback = Callbacks::read_data;
    nghttp2_submit_response(session_, stream.id_, nva, 1, &provider);
  } else {
    stream.reset_after_response_ = true;
    nghttp2_submit_response(session_, stream.id_, nva, 1, nullptr);
  }
  wake_writer();
}

bool Connection::drain() {
  if (closed_ || draining_) return false;
  draining_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  wake_writer();
  return true;
}

void Connection::close() { finish("closed locally"); }

bool Connection::usable() const {
  // check_request_allowed: false once the peer sent GOAWAY (it is draining or restarting).
  return !closed_ && !draining_ && nghttp2_session_check_request_allowed(session_) &&
         streams_.size() < std::min<uint32_t>(Settings::kMaxConcurrentStreams,
                                              nghttp2_session_get_remote_settings(
                                                  session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS));
}

}  // namespace zmesh::http2
