#include "session/keepalive.hpp"

#include "observe/log.hpp"
#include "session/handle_request.hpp"
#include "session/serve_requests.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/system/system_error.hpp>

#include <cstring>

#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace wk::session {

using tcp = asio::ip::tcp;

parked_connection::~parked_connection() {
  if (fd() >= 0) {
    ::close(release());
  }
}

bool input_pending(int fd) {
  char c;
  return ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

namespace {

// Registers a session with its worker for graceful stop, for the session's life.
struct session_registration {
  session_handle* handle;
  session_registration(context* w, session_handle* h) : handle(h) { w->sessions.push_front(*h); }
  session_registration(const session_registration&) = delete;
  session_registration& operator=(const session_registration&) = delete;
  ~session_registration() { handle->unlink(); }
};

// A plain-HTTP client connection: everything it keeps while parked.
struct http_connection {
  connection_count count;
  net::timed_stream stream;
  client_info info;
  session_handle handle;
  session_registration registration;

  http_connection(connection_count c, tcp::socket s, client_info i)
      : count(std::move(c)), stream(std::move(s)), info(std::move(i)),
        registration(count.w, &handle) {
    handle.stream = &stream;
    handle.slot = info.slot;
  }

  // close() sends what is still queued, then the FIN (a shutdown first would add a system
  // call and change nothing).
  ~http_connection() { stream.close(); }
};

void park(std::unique_ptr<http_connection> c);
void unpark(const asio::any_io_executor& ex, std::unique_ptr<net::parked> entry);

// Whether the worker has its parking lot, made on first use. Not when the process is out of
// descriptors (its epoll set needs one): quiet connections then stay in Asio, as if parking
// did not exist, and a later connection tries again. Closing them instead would free a
// descriptor only for the next queued connection to take and lose in turn.
bool parking_lot_ready(context* w, const asio::any_io_executor& ex) {
  if (w->lot) {
    return true;
  }
  try {
    w->lot = std::make_unique<net::parking_lot>(
        ex, [ex](std::unique_ptr<net::parked> p) { unpark(ex, std::move(p)); });
    return true;
  } catch (const boost::system::system_error& e) {
    observe::warn_limited(std::string("keep-alive connections stay unparked for now: ") + e.what());
    return false;
  }
}

asio::awaitable<void> serve_http(std::unique_ptr<http_connection> c, std::string early) {
  auto* w = c->count.w;
  auto& stream = c->stream;
  const auto& info = c->info;
  auto one_request = [w, &stream, &info](beast::flat_buffer& cbuf, bool last) {
    return handle_request(*w, stream, cbuf, info, last);
  };
  const bool may_park = parking_lot_ready(w, stream.get_executor());
  if (co_await serve_requests(w, stream, c->handle, early, may_park, one_request) ==
      serve_end::parked) {
    park(std::move(c));
  }
  // otherwise the connection closes here
}

// Back to Asio from the parking lot, served by a new coroutine (which reads the request, or
// finds the close).
void unpark(const asio::any_io_executor& ex, std::unique_ptr<net::parked> entry) {
  std::unique_ptr<parked_connection> p(static_cast<parked_connection*>(entry.release()));
  tcp::socket socket(ex);
  boost::system::error_code ec;
  socket.assign(p->info.socket_v6 ? tcp::v6() : tcp::v4(), p->fd(), ec);
  if (ec) {
    return;  // p closes its descriptor
  }
  p->release();
  auto c =
      std::make_unique<http_connection>(std::move(p->count), std::move(socket), std::move(p->info));
  c->handle.served = p->served;
  asio::co_spawn(ex, serve_http(std::move(c), {}), observe::log_exception{"session"});
}

// Takes a quiet connection out of Asio's reactor and into the worker's parking lot: what stays
// is a parked_connection and a kernel epoll entry, no buffer, socket object or coroutine.
void park(std::unique_ptr<http_connection> c) {
  auto* w = c->count.w;
  if (!w->lot) {
    return;  // never: serve_http parks only with a lot (parking_lot_ready)
  }
  boost::system::error_code ec;
  const int fd = c->stream.socket().release(ec);
  if (ec) {
    return;  // c closes the connection
  }
  // The deadline it was waiting with: timeouts.idle since its last answer, or header_read
  // since it was accepted when it has not sent a request yet.
  const auto deadline = c->stream.expiry();
  std::unique_ptr<net::parked> p = std::make_unique<parked_connection>(
      std::move(c->count), std::move(c->info), fd, c->handle.served, deadline);
  c.reset();  // the socket object, the registration and the stream go now
  if (!w->lot->park(p)) {
    observe::warn_limited("cannot park a keep-alive connection: " +
                          std::string(std::strerror(errno)));
  }
}

}  // namespace

void serve_connection(connection_count count, tcp::socket socket, client_info info,
                      std::string early) {
  auto c = std::make_unique<http_connection>(std::move(count), std::move(socket), std::move(info));
  auto ex = c->stream.get_executor();
  asio::co_spawn(ex, serve_http(std::move(c), std::move(early)), observe::log_exception{"session"});
}

asio::awaitable<void> serve_tls_connection(context* w, tcp::socket socket, client_info info,
                                           std::string early,
                                           std::shared_ptr<const net::server_tls> tls) {
  using tls_stream = beast::ssl_stream<net::timed_stream>;
  tls_stream client(net::timed_stream(std::move(socket)), tls->context());
  auto& lowest = beast::get_lowest_layer(client);
  lowest.expires_after(w->runtime->cfg->timeouts.header_read);
  auto [hec, used] = co_await client.async_handshake(
      asio::ssl::stream_base::server, asio::buffer(early.data(), early.size()), nothrow);
  if (hec) {
    // A connection that closes before sending anything is a TCP health check, not a failure.
    if (!(early.empty() &&
          (hec == asio::error::eof || hec == asio::ssl::error::stream_truncated))) {
      w->report.counters->count(observe::connection_event::tls_handshake_failed);
      observe::warn_limited("TLS handshake with " + info.peer + " failed: " +
                            (is_timeout(hec) ? std::string("timed out") : hec.message()));
    }
    lowest.close();
    co_return;
  }
  if (const char* name = SSL_get_servername(client.native_handle(), TLSEXT_NAMETYPE_host_name)) {
    info.sni = name;
  }
  info.tls = true;
  session_handle handle;
  handle.stream = &lowest;
  handle.slot = info.slot;
  {
    session_registration registration(w, &handle);
    auto one_request = [w, &client, &info](beast::flat_buffer& cbuf, bool last) {
      return handle_request(*w, client, cbuf, info, last);
    };
    co_await serve_requests(w, client, handle, {}, false, one_request);
  }
  if (lowest.socket().is_open()) {
    // close_notify, so that a close-delimited body cannot be mistaken for a truncated one; the
    // peer's answer is awaited briefly.
    lowest.expires_after(std::chrono::seconds(1));
    co_await client.async_shutdown(nothrow);
  }
  lowest.close();
}

}  // namespace wk::session
