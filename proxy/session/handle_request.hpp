#pragma once
// One request on a client connection, through the phases in order:
//   read_request -> prepare -> (answer_locally | prefetch body + forward) -> finish.
// Each phase returns a fault; finish alone turns it into the error reply and the log line.

#include "session/context.hpp"
#include "session/exchange.hpp"
#include "session/finish.hpp"
#include "session/local_answer.hpp"
#include "session/prepare.hpp"
#include "session/read_request.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <type_traits>

namespace wk::session {

// Handles one request whose first bytes are in `cbuf`. `last`: a connection limit makes this
// answer close the connection. `to_upstream(rt, parser, prepared, chunk, st)` forwards the
// request and relays the answer, returning an awaitable<fault> (forward() in the proxy; a
// scripted upstream in tests). Returns whether the connection stays open for another request.
template <class Client, class ToUpstream>
asio::awaitable<bool> handle_request(context& w, Client& client, beast::flat_buffer& cbuf,
                                     const client_info& conn, bool last, ToUpstream to_upstream) {
  auto rt = w.runtime;  // this request's snapshot, even if a reload happens meanwhile
  request_state st;
  st.decision = w.take_decision();
  st.decision.kind = routing::route_kind::reject;
  st.response_head = w.take_string();
  st.target = w.take_string();
  // A plain connection of a process handing its connections to a successor stays open: it is
  // handed over after this answer. Any other closes after its answer once the worker stops.
  if constexpr (std::is_same_v<Client, net::timed_stream>) {
    st.stopping = &w.closing_movable;
  } else {
    st.stopping = &w.stopping;
  }
  st.tunnels = &w.metrics.tunnels;

  auto head = w.take_head();  // the parsed head's storage, given back after the log line
  request_parser parser(head);
  bool consumed = false;
  auto f = co_await read_request(client, cbuf, parser, *rt->cfg, st, !*st.stopping && !last);
  if (!f) {
    prepared req;
    req.head = w.take_string();
    f = prepare(*rt, parser, conn, st, req);
    if (!f && req.answer_locally) {
      f = co_await answer_locally(client, st, req.act, *rt->cfg);
      consumed = parser.is_done();
    } else if (!f) {
      auto chunk = w.take_buffer();
      if (!parser.is_done()) {
        f = prefetch_body(parser, cbuf, *chunk, st);
      }
      if (!f) {
        f = co_await to_upstream(*rt, parser, req, *chunk, st);
      }
      consumed = parser.is_done() || st.request_body_done;
      w.give_buffer(std::move(chunk));
    }
    w.give_string(std::move(req.head));
  }
  const bool keep = co_await finish(w, *rt, client, st, f, conn, consumed);
  w.give_decision(std::move(st.decision));
  w.give_string(std::move(st.response_head));
  w.give_string(std::move(st.target));
  w.give_head(std::move(head));
  co_return keep;
}

// The same with the upstream pool: forward().
template <class Client>
asio::awaitable<bool> handle_request(context& w, Client& client, beast::flat_buffer& cbuf,
                                     const client_info& conn, bool last) {
  // Held by value in the request's frame; what it points to outlives the request.
  auto to_upstream = [wp = &w, cp = &client, bp = &cbuf,
                      ip = &conn](const wk::runtime::snapshot& rt, request_parser& parser,
                                  const prepared& req, body_buffer& chunk, request_state& st) {
    return forward(*wp, rt, *cp, *bp, parser, req, chunk, st, *ip);
  };
  return handle_request(w, client, cbuf, conn, last, to_upstream);
}

}  // namespace wk::session
