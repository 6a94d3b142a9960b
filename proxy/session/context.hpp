#pragma once
// What a client session is built with: the per-worker context (runtime snapshot, upstream pool,
// access log, metrics, body buffers, the list of open sessions, the parking lot) and the
// process-wide counters and stores it reports to, reached through the context so that a test
// can give a session its own. Used only on its worker's thread (no locks), except `active`,
// which the main thread reads while draining.

#include "core/free_list.hpp"
#include "http/request_reader.hpp"
#include "net/listener.hpp"
#include "net/parking_lot.hpp"
#include "net/timed_stream.hpp"
#include "observe/access_log.hpp"
#include "observe/counters.hpp"
#include "observe/metrics.hpp"
#include "routing/route.hpp"
#include "runtime/runtime.hpp"
#include "upstream/pool.hpp"
#include "validation/events.hpp"
#include "wire/proxy_protocol.hpp"

#include <boost/intrusive/list.hpp>

#include <array>
#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace wk::session {

// What a session needs to know about its connection while it waits between requests, so that
// a graceful stop can close idle connections at a request boundary.
// Linked into the worker's list for the session's life (no allocation per connection).
struct session_handle
    : boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
  net::timed_stream* stream = nullptr;
  bool idle = false;
  std::size_t served = 0;                    // requests answered on this connection so far
  const net::listener_slot* slot = nullptr;  // the listener it came in on
  // Binary upgrade (session/handoff.hpp): `movable` for a plain-HTTP connection, which can be
  // handed to the new process; `hand_off` when the worker asked this idle one to go now;
  // `carry`: the bytes of a next request already read, which go along.
  bool movable = false;
  bool hand_off = false;
  std::string carry;
};

// Newest first.
using session_list =
    boost::intrusive::list<session_handle, boost::intrusive::constant_time_size<false>>;

// Bytes moved per read/write step of a body, in each direction. Memory per busy connection
// stays bounded whatever the body size.
inline constexpr std::size_t body_chunk_size = 16 * 1024;
using body_buffer = std::array<char, body_chunk_size>;

// The process-wide instances a session reports to (the defaults); a test builds its own.
struct sinks {
  observe::counters* counters = &observe::process_counters();
  validation::event_store* events = &validation::events();
};

class handoff_sender;

struct context {
  context();
  context(const context&) = delete;
  context& operator=(const context&) = delete;
  ~context();

  std::shared_ptr<const wk::runtime::snapshot> runtime;  // the snapshot new requests use
  upstream::pool pool;
  observe::access_log log;
  observe::worker_metrics metrics;  // written here only; summed by the admin listener
  sinks report;
  bool stopping = false;
  // Binary upgrade: this worker's end of the channel to the new process while it hands plain
  // connections over (null otherwise), and whether an answer on such a connection closes it
  // (stopping, and no hand-over possible).
  std::unique_ptr<handoff_sender> handoff;
  bool closing_movable = false;
  bool handing_off() const;
  void update_closing();
  session_list sessions;  // open client sessions
  // Quiet plain-HTTP keep-alive connections (see serve_connection); made on first use.
  std::unique_ptr<net::parking_lot> lot;
  std::atomic<std::size_t> active{0};
  // Body buffers are taken for one request and given back after it: steady state allocates
  // nothing, and idle keep-alive connections hold no buffer. Bounded: 1,024 x 16 KiB = 16 MiB.
  core::free_list<std::unique_ptr<body_buffer>> free_buffers{1024};
  std::unique_ptr<body_buffer> take_buffer();
  void give_buffer(std::unique_ptr<body_buffer> b);

  // Routing decisions, the same way: their strings keep their capacity from one request to
  // the next, so routing a request allocates nothing once the worker is warm.
  core::free_list<routing::decision> free_decisions{1024};
  routing::decision take_decision();
  void give_decision(routing::decision d);

  // Strings for the heads a request builds (the request for the backend, the answer for the
  // client), the same way: taken empty, given back with their capacity; none over 4 KiB.
  core::free_list<std::string> free_strings{256};
  std::string take_string();
  void give_string(std::string s);

  // Where a request's head is parsed into (http/request_reader.hpp), the same way; one whose
  // head was over 4 KiB is not kept.
  core::free_list<http::request_storage> free_heads{256};
  http::request_storage take_head() { return free_heads.take(); }
  void give_head(http::request_storage h);
};

// Counts a client connection in its worker and listener (the accept loop counted it in the
// listener already) until it ends; moves with the connection.
struct connection_count {
  context* w;
  std::shared_ptr<net::listener_slot> slot;
  connection_count(context* worker, std::shared_ptr<net::listener_slot> s)
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

}  // namespace wk::session
