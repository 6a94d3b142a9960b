#pragma once
// Phase 3: the exchange with a backend. A connection from the pool or a new one, the request
// sent and the response relayed on it (relay.hpp), a 101 switch to a tunnel, the retry rule for
// a pooled connection the backend closed, and the connection back to the pool.

#include "net/tunnel.hpp"
#include "runtime/runtime.hpp"
#include "session/context.hpp"
#include "session/finish.hpp"
#include "session/prepare.hpp"
#include "session/relay.hpp"
#include "upstream/connector.hpp"
#include "wire/proxy_protocol.hpp"

#include <memory>
#include <string>
#include <variant>

namespace wk::session {

// RFC 9110 section 9.2.2: a request the client may send again without changing the outcome.
bool idempotent(bhttp::verb v);

// A pooled connection may have been closed by the backend just as we reused it: such a
// failure before any response byte came back is retried on another connection (twice at
// most), but only for an idempotent method without a body (RFC 9110 section 9.2.2). The
// backend may have acted on a POST it read in full before closing; sending it again could
// charge a card twice. Anything else gets its 502 instead.
bool may_retry(const request_parser& parser);

// One request/response exchange on a backend stream of either kind (`ubuf` and `fields`: the
// connection's read buffer and response-field storage), then the tunnel after a 101.
template <class Up, class Client>
asio::awaitable<fault> exchange(Up& up, beast::flat_buffer& ubuf, http::head_storage& fields,
                                Client& client, beast::flat_buffer& cbuf, request_parser& parser,
                                std::string_view head, body_buffer& chunk, request_state& st,
                                const config::config& cfg, bool expect_continue) {
  if (auto f =
          co_await send_request(up, client, cbuf, parser, head, chunk, st, cfg, expect_continue);
      f) {
    if (!early_answer_possible(f, st, parser)) {
      co_return f;
    }
    // The backend may have answered and closed (relay.hpp, early answers).
    const bool keep = st.client_keep_alive;
    st.client_keep_alive = keep && may_drain(st, parser, expect_continue);
    auto answer = co_await relay_response(up, ubuf, fields, client, chunk, st, cfg);
    st.upstream_reusable = false;
    if (st.status == 0) {
      st.client_keep_alive = keep;
      co_return f;  // no answer came: the failure to send stands (502)
    }
    if (answer) {
      co_return answer;
    }
    if (st.client_keep_alive && co_await drain_request_body(client, cbuf, parser, chunk, st, cfg)) {
      st.early_answer = "drained";
    } else {
      st.early_answer = "closed";
      st.client_keep_alive = false;
    }
    co_return fault{};
  }
  auto f = co_await relay_response(up, ubuf, fields, client, chunk, st, cfg);
  if (st.tunnel && !f) {
    st.tunnels->add(1);
    auto down = std::make_unique<body_buffer>();
    auto stats =
        co_await net::run_tunnel(client, cbuf, up, ubuf, chunk, *down, cfg.timeouts.tunnel_idle);
    st.bytes_in += stats.client_to_upstream;
    st.bytes_out += stats.upstream_to_client;
    st.tunnels->add(-1);
  }
  co_return f;
}

// Forwards the prepared request to st.upstream: a pooled connection or a new one, retried by
// the rule above, given back to the pool when it can be reused.
template <class Client>
asio::awaitable<fault> forward(context& w, const wk::runtime::snapshot& rt, Client& client,
                               beast::flat_buffer& cbuf, request_parser& parser,
                               const prepared& req, body_buffer& chunk, request_state& st,
                               const client_info& conn) {
  const auto& cfg = *rt.cfg;
  std::unique_ptr<upstream::connection> up;
  const auto ulabel = label_of(rt, st.upstream);
  // A backend that gets PROXY headers learns the client's address once per connection: such a
  // connection is only ever reused for the same client connection.
  std::string preface;
  std::string client_key;  // the pool key of such a connection
  switch (st.upstream->cfg.send_proxy_protocol) {
  case config::proxy_protocol::off:
    break;
  case config::proxy_protocol::v1:
    preface = wire::build_proxy_v1(conn.pp);
    break;
  case config::proxy_protocol::v2:
    preface = wire::build_proxy_v2(conn.pp);
    break;
  }
  if (st.upstream->cfg.send_proxy_protocol != config::proxy_protocol::off) {
    client_key = st.upstream->key + "|client=" + conn.peer;
  }
  const std::string& pool_key = client_key.empty() ? st.upstream->key : client_key;
  const bool retry_allowed = may_retry(parser);
  fault f;
  for (int attempt = 0;; ++attempt) {
    up = attempt < 2 ? w.pool.take(pool_key) : nullptr;
    bool reused = up != nullptr;
    (reused ? w.metrics.pool_hits : w.metrics.pool_misses)[static_cast<std::size_t>(ulabel)].add();
    if (!up) {
      auto outcome = co_await upstream::connect(*st.upstream, cfg.timeouts, preface);
      if (!outcome.conn) {
        f = fault{outcome.error, std::move(outcome.detail)};
        break;
      }
      up = std::move(outcome.conn);
      up->key = pool_key;
    }
    ++up->uses;
    if (auto* tls = std::get_if<upstream::tls_stream>(&up->stream)) {
      f = co_await exchange(*tls, up->buffer, up->head, client, cbuf, parser, req.head, chunk, st,
                            cfg, req.expect_continue);
    } else {
      f = co_await exchange(std::get<upstream::tcp_stream>(up->stream), up->buffer, up->head,
                            client, cbuf, parser, req.head, chunk, st, cfg, req.expect_continue);
    }
    if (f && f.retryable && retry_allowed && reused && !st.response_started) {
      up.reset();
      continue;
    }
    break;
  }
  if (!f && st.upstream_reusable && up) {
    up->buffer.clear();
    if (up->buffer.capacity() > body_chunk_size) {
      up->buffer.shrink_to_fit();  // a pooled connection keeps no large buffer
    }
    if (up->head.bytes.capacity() > 4096) {
      up->head = {};  // nor the fields of an unusually large response header
    }
    w.pool.give(std::move(up));
  }
  co_return f;
}

}  // namespace wk::session
