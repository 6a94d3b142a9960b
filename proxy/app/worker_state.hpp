#pragma once
// Per-worker state: the session context (session/context.hpp) and what the worker does with
// the connections it holds when it stops or runs out of connection slots. Used only on its
// worker's thread (no locks), except `active`, which the main thread reads while draining.

#include "net/listener.hpp"
#include "session/context.hpp"
#include "session/handoff.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <cstddef>

namespace wk::app {

struct worker_state : session::context {
  // Marks the worker as stopping. No connection is closed: each is answered once more, with
  // Connection: close, when its next request comes (HAProxy's idle-close-on-response, as the
  // default), or closes at its own idle deadline. close_idle() closes whatever is still idle
  // (the drain timed out).
  void begin_stop();
  void close_idle();

  // Binary upgrade: from now on plain-HTTP connections go to the new process through `sender`
  // at their next request boundary; idle ones (parked or waiting here) go at once.
  void begin_handoff(std::unique_ptr<session::handoff_sender> sender,
                     const boost::asio::any_io_executor& ex);

  // limits.max_connections reached on `slot`: closes this worker's oldest keep-alive connection
  // from that listener that waits between requests (parked first: they have waited longest),
  // so that a new client gets in instead of a 503. False when there is none. A connection that
  // has not sent its first request yet is never chosen (timeouts.header_read bounds those).
  bool make_room(const net::listener_slot* slot);

  std::size_t parked_count() const;  // connections in the parking lot now
};

}  // namespace wk::app
