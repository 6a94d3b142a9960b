#pragma once
// Phase 4: the end of a request, for every path. The one place that turns a fault into the
// error reply, writes the request's access-log line, metrics and validation event, and decides
// whether the connection stays open.

#include "http/local_reply.hpp"
#include "runtime/runtime.hpp"
#include "session/context.hpp"
#include "session/request_state.hpp"
#include "session/wire_io.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/stream_traits.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <type_traits>

namespace wk::session {

// Counts a failed upstream exchange in `w`'s metrics (nothing for failures that are not the
// upstream's).
void count_upstream_failure(context* w, observe::upstream_label u, core::failure f);

// The metrics label of an upstream target of `rt`.
observe::upstream_label label_of(const wk::runtime::snapshot& rt, const upstream::target* t);

// The access-log line, request metrics and validation event of a request.
void write_access_log(context& w, const request_state& st, const fault& f, const client_info& conn);

// Sends the local error reply for `f` (nothing when the failure has no status, or when a
// response already started: then closing the connection is the only signal left).
template <class Client>
asio::awaitable<void> send_error(Client& client, request_state& st, const fault& f,
                                 const config::timeouts& to) {
  auto status = core::status_for(f.error);
  if (status == 0 || st.response_started) {
    co_return;
  }
  auto bytes = http::error_reply(f.error, f.detail, st.head);
  beast::get_lowest_layer(client).expires_after(to.body_idle);
  st.status = status;
  st.client_keep_alive = false;
  st.response_started = true;
  co_await write_all(client, bytes);
}

// RFC 9112 section 9.6: closing a connection with unread input makes the kernel send a reset,
// and a reset can destroy the answer before the client has read it (a 413 or 408 sent while
// the client is still sending). So when the connection ends before the request was read whole,
// the proxy shuts its sending side after the answer (the FIN follows it) and reads and discards
// what still comes, until the client closes, for at most linger_time and linger_idle without
// a byte. Plain connections only: a TLS connection ends with its close_notify.
inline constexpr std::chrono::milliseconds linger_time{5000};
inline constexpr std::chrono::milliseconds linger_idle{1000};

template <class Client> asio::awaitable<void> lingering_close(Client& client) {
  auto& lowest = beast::get_lowest_layer(client);
  if constexpr (std::is_same_v<std::remove_cvref_t<decltype(lowest)>, Client>) {
    boost::system::error_code ec;
    lowest.socket().shutdown(asio::socket_base::shutdown_send, ec);
    if (ec) {
      co_return;
    }
    std::array<char, 2048> sink;
    const auto end = steady::now() + linger_time;
    for (auto now = steady::now(); now < end; now = steady::now()) {
      lowest.expires_after(std::min<steady::duration>(linger_idle, end - now));
      auto [rec, n] = co_await lowest.async_read_some(asio::buffer(sink), nothrow);
      if (rec) {
        break;
      }
    }
  }
}

// Ends the request `st` (made on snapshot `rt`) with outcome `f`. `request_consumed`: the
// whole request, body included, was read from the client. Returns whether the connection
// stays open for another request.
template <class Client>
asio::awaitable<bool> finish(context& w, const wk::runtime::snapshot& rt, Client& client,
                             request_state& st, const fault& f, const client_info& conn,
                             bool request_consumed) {
  if (f.error == core::failure::client_gone && !st.head_read) {
    co_return false;  // no whole request arrived: no log line
  }
  if (f) {
    if (st.upstream != nullptr) {
      count_upstream_failure(&w, label_of(rt, st.upstream), f.error);
    }
    co_await send_error(client, st, f, rt.cfg->timeouts);
    st.client_keep_alive = false;
  }
  write_access_log(w, st, f, conn);
  // Keep-alive was decided when the answer's head was built (a stop that began before then
  // made it Connection: close). A stop that began after it does not close the connection: its
  // client was told it stays open and may be sending its next request right now, which is
  // answered with Connection: close.
  const bool keep =
      st.local_answer ? st.client_keep_alive : st.client_keep_alive && request_consumed;
  if (!keep && !request_consumed && st.response_started && !st.tunnel) {
    co_await lingering_close(client);
  }
  co_return keep;
}

}  // namespace wk::session
