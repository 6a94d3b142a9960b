#pragma once
// One client connection, request after request, through the pipeline:
//   read header -> checks and limits -> normalize + route -> header rules -> upstream
//   (pool or connect) -> send request, stream body -> read response (1xx relayed) ->
//   send response, stream body -> pool/keep-alive decision -> one access-log line.
// Stages are plain functions called in that order; per-request state lives in one struct.

#include "app/runtime.hpp"
#include "http/failure.hpp"
#include "net/listener.hpp"
#include "net/proxy_protocol.hpp"
#include "observe/access_log.hpp"
#include "observe/metrics.hpp"
#include "upstream/pool.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace wk::http {

// What a session needs to know about its connection while it waits between requests, so that
// a graceful stop can close idle connections at a request boundary.
struct session_handle {
  boost::beast::tcp_stream* stream = nullptr;
  bool idle = false;
  std::size_t served = 0;  // requests answered on this connection so far
};

// Bytes moved per read/write step of a body, in each direction. Memory per busy connection
// stays bounded whatever the body size.
inline constexpr std::size_t body_chunk_size = 16 * 1024;
using body_buffer = std::array<char, body_chunk_size>;

// Per-worker state. Used only on its worker's thread (no locks), except `active`, which the
// main thread reads while draining.
struct worker_state {
  std::shared_ptr<const app::runtime> runtime;  // the snapshot new requests use
  upstream::pool pool;
  observe::access_log log;
  observe::worker_metrics metrics;  // written here only; summed by the admin listener
  bool stopping = false;
  std::unordered_set<session_handle*> sessions;
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
};

// Who is at the other end of a client connection, as logs and backends see it.
struct client_info {
  std::string peer;     // "ip:port" of the client (carried by a PROXY header when trusted)
  std::string peer_ip;  // for X-Forwarded-For
  bool tls = false;     // arrived on a TLS-terminating listener: X-Forwarded-Proto https
  std::string sni;      // the server name the TLS client asked for
  net::pp_address pp;   // source: the client; destination: the address it connected to
  std::size_t listener_index = 0;  // the listener's metrics label (net::listener_slot)
};

// Counts a failed upstream exchange in `w`'s metrics (nothing for failures that are not the
// upstream's).
void count_upstream_failure(worker_state* w, observe::upstream_label u, failure f);

// Serves one plain-HTTP client connection until it closes. `early` holds bytes already read
// from it (after a PROXY header). `w` outlives the coroutine (the worker destroys its
// io_context, and with it every session frame, before its state). Never throws for network or
// protocol errors.
boost::asio::awaitable<void> serve_connection(worker_state* w, boost::asio::ip::tcp::socket socket,
                                              client_info info, std::string early);

// The same over TLS: the handshake with `tls`'s certificates (chosen by SNI) within
// timeouts.header_read, then HTTP as above. A failed handshake is counted and logged (rate
// limited), never more. `tls` is kept alive for the connection's life.
boost::asio::awaitable<void> serve_tls_connection(worker_state* w,
                                                  boost::asio::ip::tcp::socket socket,
                                                  client_info info, std::string early,
                                                  std::shared_ptr<const net::server_tls> tls);

}  // namespace wk::http
