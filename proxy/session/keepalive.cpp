#include "session/keepalive.hpp"

#include "observe/log.hpp"
#include "session/handle_request.hpp"

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

// A keep-alive connection waits this long, plus up to one deadline_tick, for its next request
// with a buffer and its coroutine frames before it parks. A connection kept busy by its client
// rarely waits at the moment of a tick; one that does pays a park and an unpark (a few system
// calls) and loses nothing.
constexpr auto park_linger = std::chrono::milliseconds(0);

enum class serve_end { closed, parked };

// Request after request on one client connection, plain or TLS, until either side ends it or,
// when `may_park`, the connection stays quiet for park_after between requests.
template <class Client>
asio::awaitable<serve_end> serve_requests(context* w, Client& client, session_handle& handle,
                                          const client_info& conn, std::string_view early,
                                          bool may_park) {
  auto& lowest = beast::get_lowest_layer(client);
  // Bounded: a request head, plus what one body read brings in (Beast reads at most 64 KiB).
  beast::flat_buffer cbuf(w->runtime->cfg->limits.header_bytes + 80 * 1024);
  if (!early.empty()) {
    const auto n = std::min(early.size(), cbuf.max_size());
    cbuf.commit(asio::buffer_copy(cbuf.prepare(n), asio::buffer(early.data(), n)));
  }

  std::size_t burst = 0;  // requests answered since the connection last waited for input
  for (;;) {
    if (cbuf.size() == 0) {
      // Stopping: a connection whose client is sending right now (or that comes back from
      // the parking lot with a request) is still served, with Connection: close.
      if (w->stopping && !input_pending(lowest.socket().native_handle())) {
        break;
      }
      if (cbuf.capacity() > 4096) {
        cbuf.shrink_to_fit();  // an idle connection keeps no large buffer
      }
      // Between requests: wait for the next one with the keep-alive idle deadline. A new
      // connection's first byte must come within header_read: a silent socket must not hold a
      // connection slot for the whole keep-alive timeout.
      handle.idle = true;
      const auto& timeouts = w->runtime->cfg->timeouts;
      lowest.expires_after(handle.served == 0 ? timeouts.header_read : timeouts.idle);
      if (may_park) {
        lowest.park_after(park_linger);
      }
      auto [rec, rn] = co_await client.async_read_some(cbuf.prepare(2048), nothrow);
      handle.idle = false;
      if (may_park) {
        lowest.park_never();
        if (rec == asio::error::operation_aborted && lowest.park_requested() && !w->stopping) {
          co_return serve_end::parked;
        }
      }
      if (rec) {
        break;
      }
      cbuf.commit(rn);
      burst = 0;
    }
    const auto& limits = w->runtime->cfg->limits;
    bool last = false;
    if (handle.served + 1 >= limits.max_requests_per_connection) {
      last = true;
      w->report.counters->count(observe::limit_event::requests_per_connection);
    } else if (limits.max_pipelined != 0 && ++burst >= limits.max_pipelined) {
      last = true;
      w->report.counters->count(observe::limit_event::pipelined);
    }
    const bool keep = co_await handle_request(*w, client, cbuf, conn, last);
    ++handle.served;
    if (!keep || last) {
      break;
    }
  }
  co_return serve_end::closed;
}

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
  const bool may_park = parking_lot_ready(w, c->stream.get_executor());
  if (co_await serve_requests(w, c->stream, c->handle, c->info, early, may_park) ==
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
    co_await serve_requests(w, client, handle, info, {}, false);
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
