#include "session/keepalive.hpp"

#include "observe/log.hpp"
#include "session/handle_request.hpp"
#include "session/handoff.hpp"
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

// What the new process needs to serve a connection of listener `slot` (see handoff.hpp).
std::string handoff_message(const client_info& info, std::size_t served, std::string early) {
  handoff_record r;
  if (info.slot != nullptr) {
    r.listener = info.slot->address;
    r.ordinal = info.slot->ordinal;
  }
  r.served = served;
  r.info = info;
  r.early = std::move(early);
  return encode(r);
}

// Sends the connection to the new process. True when it went: `c` then only closes this
// process's copy of the descriptor (the client sees nothing). False when it stays here (the
// channel broke): the socket is back in `c`, ready to be served.
asio::awaitable<bool> hand_off(http_connection& c) {
  auto* w = c.count.w;
  if (!w->handing_off() || c.info.slot == nullptr) {
    co_return false;
  }
  auto message = handoff_message(c.info, c.handle.served, std::move(c.handle.carry));
  // Out of Asio's reactor first (release, never close: the socket lives on in the other
  // process, and a registration left in this epoll set would keep waking this worker).
  boost::system::error_code ec;
  const int fd = c.stream.socket().release(ec);
  if (ec) {
    co_return false;
  }
  if (co_await w->handoff->send(fd, std::move(message))) {
    w->report.counters->connections_handed_off.fetch_add(1, std::memory_order_relaxed);
    ::close(fd);
    co_return true;
  }
  w->update_closing();
  c.stream.socket().assign(c.info.socket_v6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    co_return true;  // cannot happen (the descriptor was ours a moment ago); it ends here
  }
  co_return false;
}

asio::awaitable<void> serve_http(std::unique_ptr<http_connection> c, std::string early) {
  auto* w = c->count.w;
  auto& stream = c->stream;
  const auto& info = c->info;
  auto one_request = [w, &stream, &info](beast::flat_buffer& cbuf, bool last) {
    return handle_request(*w, stream, cbuf, info, last);
  };
  c->handle.movable = true;
  for (;;) {
    const bool may_park = parking_lot_ready(w, stream.get_executor());
    const auto end = co_await serve_requests(w, stream, c->handle, early, may_park, one_request);
    if (end == serve_end::parked) {
      park(std::move(c));
      co_return;
    }
    if (end == serve_end::closed) {
      co_return;  // the connection closes here
    }
    // (No co_await inside a condition: GCC 12 miscompiles some.)
    const bool moved = co_await hand_off(*c);
    if (moved) {
      co_return;  // only this process's copy of the connection closes
    }
    early = std::move(c->handle.carry);  // not handed over: served here
  }
}

// A parked connection to the new process; served here after all when that fails.
asio::awaitable<void> hand_off_one_parked(context* w, asio::any_io_executor ex,
                                          std::unique_ptr<parked_connection> p) {
  if (w->handing_off() && p->info.slot != nullptr) {
    const bool sent = co_await w->handoff->send(p->fd(), handoff_message(p->info, p->served, {}));
    if (sent) {
      w->report.counters->connections_handed_off.fetch_add(1, std::memory_order_relaxed);
      co_return;  // p closes this process's copy
    }
  }
  w->update_closing();
  unpark(ex, std::move(p));
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

void hand_off_parked(context* w, const asio::any_io_executor& ex) {
  if (!w->lot) {
    return;
  }
  w->lot->take_all([w, &ex](std::unique_ptr<net::parked> entry) {
    std::unique_ptr<parked_connection> p(static_cast<parked_connection*>(entry.release()));
    asio::co_spawn(ex, hand_off_one_parked(w, ex, std::move(p)),
                   observe::log_exception{"hand-off"});
  });
}

void serve_connection(connection_count count, tcp::socket socket, client_info info,
                      std::string early, std::size_t served) {
  auto c = std::make_unique<http_connection>(std::move(count), std::move(socket), std::move(info));
  c->handle.served = served;
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
