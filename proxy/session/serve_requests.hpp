#pragma once
// The keep-alive loop of one client connection: request after request until either side ends
// it or the connection parks. A template over the client stream and the per-request step, so
// that the session fuzzer (fuzz/fuzz_session.cpp) drives this very loop over in-memory streams.

#include "session/context.hpp"
#include "session/handoff.hpp"
#include "session/keepalive.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>

#include <algorithm>
#include <chrono>
#include <string_view>

namespace wk::session {

// A keep-alive connection waits this long, plus up to one deadline_tick, for its next request
// with a buffer and its coroutine frames before it parks. A connection kept busy by its client
// rarely waits at the moment of a tick; one that does pays a park and an unpark (a few system
// calls) and loses nothing.
inline constexpr auto park_linger = std::chrono::milliseconds(0);

// closed: the connection ends here; parked: it waits in the parking lot; handed_off: it goes
// to the process replacing this one (session/handoff.hpp), with handle.carry.
enum class serve_end { closed, parked, handed_off };

// Request after request on one client connection, plain or TLS, until either side ends it or,
// when `may_park`, the connection stays quiet for park_after between requests.
// `one_request(cbuf, last)` serves the request whose first bytes are in `cbuf` and returns an
// awaitable<bool>: whether the connection stays open (handle_request in the proxy).
template <class Client, class OneRequest>
asio::awaitable<serve_end> serve_requests(context* w, Client& client, session_handle& handle,
                                          std::string_view early, bool may_park,
                                          OneRequest one_request) {
  auto& lowest = beast::get_lowest_layer(client);
  // Bounded: a request head, plus what one body read brings in (Beast reads at most 64 KiB).
  beast::flat_buffer cbuf(w->runtime->cfg->limits.header_bytes + 80 * 1024);
  if (!early.empty()) {
    const auto n = std::min(early.size(), cbuf.max_size());
    cbuf.commit(asio::buffer_copy(cbuf.prepare(n), asio::buffer(early.data(), n)));
  }

  std::size_t burst = 0;  // requests answered since the connection last waited for input
  for (;;) {
    // A request boundary: a plain connection goes to the new process now, with the bytes of
    // its next request read so far (a deep pipeline, over the limit, is served here).
    if (handle.movable && w->handing_off() && cbuf.size() <= handoff_early_limit) {
      handle.carry.assign(static_cast<const char*>(cbuf.data().data()), cbuf.size());
      co_return serve_end::handed_off;
    }
    if (cbuf.size() == 0) {
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
      }
      if (rec == asio::error::operation_aborted && handle.hand_off) {
        handle.hand_off = false;
        if (w->handing_off()) {
          handle.carry.clear();
          co_return serve_end::handed_off;
        }
        continue;  // the hand-over failed meanwhile: wait again
      }
      // Parked even while stopping: the drain keeps every connection until its next request.
      if (may_park && rec == asio::error::operation_aborted && lowest.park_requested()) {
        co_return serve_end::parked;
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
    const bool keep = co_await one_request(cbuf, last);
    ++handle.served;
    if (!keep || last) {
      break;
    }
  }
  co_return serve_end::closed;
}

}  // namespace wk::session
