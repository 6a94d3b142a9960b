#pragma once
// One client connection, request after request, through the pipeline:
//   read header -> checks and limits -> normalize + route -> header rules -> upstream
//   (pool or connect) -> send request, stream body -> read response (1xx relayed) ->
//   send response, stream body -> pool/keep-alive decision -> one access-log line.
// Stages are plain functions called in that order; per-request state lives in one struct.

#include "core/failure.hpp"
#include "net/listener.hpp"
#include "net/timed_stream.hpp"
#include "observe/access_log.hpp"
#include "observe/metrics.hpp"
#include "runtime/runtime.hpp"
#include "upstream/pool.hpp"
#include "wire/proxy_protocol.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace wk::http {

// What a session needs to know about its connection while it waits between requests, so that
// a graceful stop can close idle connections at a request boundary.
// Linked into the worker's list for the session's life (no allocation per connection).
struct session_handle {
  net::timed_stream* stream = nullptr;
  bool idle = false;
  std::size_t served = 0;                    // requests answered on this connection so far
  const net::listener_slot* slot = nullptr;  // the listener it came in on
  session_handle* prev = nullptr;
  session_handle* next = nullptr;
};

// Bytes moved per read/write step of a body, in each direction. Memory per busy connection
// stays bounded whatever the body size.
inline constexpr std::size_t body_chunk_size = 16 * 1024;
using body_buffer = std::array<char, body_chunk_size>;

// Per-worker state. Used only on its worker's thread (no locks), except `active`, which the
// main thread reads while draining.
class parking_lot;

struct worker_state {
  worker_state();
  worker_state(const worker_state&) = delete;
  worker_state& operator=(const worker_state&) = delete;
  ~worker_state();

  std::shared_ptr<const wk::runtime::snapshot> runtime;  // the snapshot new requests use
  upstream::pool pool;
  observe::access_log log;
  observe::worker_metrics metrics;  // written here only; summed by the admin listener
  bool stopping = false;
  session_handle* sessions = nullptr;  // intrusive list of open client sessions
  // Quiet plain-HTTP keep-alive connections (see serve_connection); made on first use.
  std::unique_ptr<parking_lot> lot;
  std::atomic<std::size_t> active{0};
  // Body buffers are taken for one request and given back after it: steady state allocates
  // nothing, and idle keep-alive connections hold no buffer.
  std::vector<std::unique_ptr<body_buffer>> free_buffers;

  std::unique_ptr<body_buffer> take_buffer();
  void give_buffer(std::unique_ptr<body_buffer> b);

  // Marks the worker as stopping and closes keep-alive connections that are between requests
  // with nothing sent; busy ones close after their current response. A connection that has
  // not sent its first request yet, or has bytes of a next request waiting, is left to be
  // served (with Connection: close): its client is sending right now. close_idle() later
  // closes whatever is still idle.
  void begin_stop();
  void close_idle();

  // limits.max_connections reached on `slot`: closes this worker's oldest keep-alive connection
  // from that listener that waits between requests (parked first: they have waited longest),
  // so that a new client gets in instead of a 503. False when there is none. A connection that
  // has not sent its first request yet is never chosen (timeouts.header_read bounds those).
  bool make_room(const net::listener_slot* slot);

  std::size_t parked_count() const;  // connections in the parking lot now

  void add_session(session_handle* h);
  void remove_session(session_handle* h);
};

// Counts a client connection in its worker and listener (the accept loop counted it in the
// listener already) until it ends; moves with the connection.
struct connection_count {
  worker_state* w;
  std::shared_ptr<net::listener_slot> slot;
  connection_count(worker_state* worker, std::shared_ptr<net::listener_slot> s)
      : w(worker), slot(std::move(s)) {
    w->active.fetch_add(1, std::memory_order_relaxed);
  }
  connection_count(connection_count&& other) noexcept : w(other.w), slot(std::move(other.slot)) {}
  connection_count(const connection_count&) = delete;
  connection_count& operator=(const connection_count&) = delete;
  connection_count& operator=(connection_count&&) = delete;
  ~connection_count() {
    if (slot) {
      w->active.fetch_sub(1, std::memory_order_relaxed);
      slot->active.fetch_sub(1, std::memory_order_relaxed);
    }
  }
};

// Who is at the other end of a client connection, as logs and backends see it.
struct client_info {
  std::string peer;        // "ip:port" of the client (carried by a PROXY header when trusted)
  std::string peer_ip;     // for X-Forwarded-For
  bool tls = false;        // arrived on a TLS-terminating listener: X-Forwarded-Proto https
  bool socket_v6 = false;  // the socket itself is IPv6 (whatever a PROXY header says)
  std::string sni;         // the server name the TLS client asked for
  wire::pp_address pp;     // source: the client; destination: the address it connected to
  std::size_t listener_index = 0;            // the listener's metrics label (net::listener_slot)
  const net::listener_slot* slot = nullptr;  // that listener (kept alive by connection_count)
};

// Counts a failed upstream exchange in `w`'s metrics (nothing for failures that are not the
// upstream's).
void count_upstream_failure(worker_state* w, observe::upstream_label u, core::failure f);

// Serves one plain-HTTP client connection until it closes; returns at once. `early` holds
// bytes already read from it (after a PROXY header). While requests come, a coroutine serves
// them; a keep-alive connection quiet for a moment is parked: it keeps only its socket, its
// client_info and a readiness wait (no buffer, no coroutine frame) until the next request
// arrives or timeouts.idle passes. `w` outlives the connection (the worker destroys its
// io_context, and with it every session, before its state). Never throws for network or
// protocol errors.
void serve_connection(connection_count count, boost::asio::ip::tcp::socket socket, client_info info,
                      std::string early);

// The same over TLS: the handshake with `tls`'s certificates (chosen by SNI) within
// timeouts.header_read, then HTTP as above. A failed handshake is counted and logged (rate
// limited), never more. `tls` is kept alive for the connection's life.
boost::asio::awaitable<void> serve_tls_connection(worker_state* w,
                                                  boost::asio::ip::tcp::socket socket,
                                                  client_info info, std::string early,
                                                  std::shared_ptr<const net::server_tls> tls);

}  // namespace wk::http
