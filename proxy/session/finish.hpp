#pragma once
// Phase 4: the end of a request, for every path. The one place that turns a fault into the
// error reply, writes the request's access-log line, metrics and validation event, and decides
// whether the connection stays open.

#include "runtime/runtime.hpp"
#include "http/local_reply.hpp"
#include "session/context.hpp"
#include "session/request_state.hpp"
#include "session/wire_io.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/stream_traits.hpp>

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

// Ends the request `st` (made on snapshot `rt`) with outcome `f`. `request_consumed`: the
// whole request, body included, was read from the client. Returns whether the connection
// stays open for another request.
template <class Client>
asio::awaitable<bool> finish(context& w, const wk::runtime::snapshot& rt, Client& client, request_state& st,
                             const fault& f, const client_info& conn, bool request_consumed) {
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
  if (st.local_answer) {
    co_return st.client_keep_alive;  // decided when the answer was sent
  }
  co_return st.client_keep_alive&& request_consumed && !w.stopping;
}

}  // namespace wk::session
