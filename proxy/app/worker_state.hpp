#pragma once
// Per-worker state: the session context (session/context.hpp) and what the worker does with
// the connections it holds when it stops or runs out of connection slots. Used only on its
// worker's thread (no locks), except `active`, which the main thread reads while draining.

#include "net/listener.hpp"
#include "session/context.hpp"

#include <cstddef>

namespace wk::app {

struct worker_state : session::context {
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
};

}  // namespace wk::app
