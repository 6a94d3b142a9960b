#pragma once
// Phase 1: reading a request. The head is checked strictly on its raw bytes and parsed in the
// same pass (request_head_scanner, request_reader); the head-level checks and limits follow,
// and the body bytes that came with the head are parsed before any backend is involved.

#include "config/config.hpp"
#include "http/upstream_request.hpp"
#include "session/request_state.hpp"
#include "session/wire_io.hpp"
#include "wire/request_head.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>

#include <algorithm>

namespace wk::session {

// The parser's body limit for limits.max_body_bytes (0: none).
boost::optional<std::uint64_t> body_limit_for(const config::limits& l);

// The failure a rejected head is answered with.
core::failure failure_for(wire::head_status s);

// Parses the body bytes that arrived with the header (the whole body, for most requests) into
// `chunk` before any backend is involved, so that a malformed body is a 400 that reaches no
// backend, and a small request goes out in one write. Counts them in st.bytes_in and
// st.prefetched.
fault prefetch_body(request_parser& parser, beast::flat_buffer& cbuf, body_buffer& chunk,
                    request_state& st);

// A declared Content-Length over limits.max_body_bytes.
fault check_body_limit(const request_parser& parser, const config::limits& limits);

// Reads until `cbuf` holds a whole request head and parses it once: the strict scanner checks
// its raw bytes and notes where each part is (wire/request_head.hpp), and `parser` takes the
// head from there (http/request_reader.hpp). One header deadline covers the whole head
// (slowloris).
template <class Client>
asio::awaitable<fault> read_request_head(Client& client, beast::flat_buffer& cbuf,
                                         request_parser& parser, const config::limits& limits) {
  auto scanner = parser.scanner(
      wire::head_limits{limits.header_bytes, limits.target_bytes, limits.header_count});
  wire::head_scan r;
  for (;;) {
    auto data = cbuf.data();
    r = scanner.scan({static_cast<const char*>(data.data()), data.size()});
    if (r.status == wire::head_status::complete) {
      break;
    }
    if (r.status != wire::head_status::incomplete) {
      co_return fault{failure_for(r.status), std::string(r.reason)};
    }
    auto room = cbuf.max_size() - cbuf.size();
    if (room == 0) {
      co_return fault{core::failure::header_too_large, "request header over the limit"};
    }
    auto [ec, n] =
        co_await client.async_read_some(cbuf.prepare(std::min<std::size_t>(room, 4096)), nothrow);
    if (ec) {
      co_return fault{is_timeout(ec) && cbuf.size() > 0 ? core::failure::header_timeout
                                                        : core::failure::client_gone};
    }
    cbuf.commit(n);
  }
  auto data = cbuf.data();
  const auto ec = parser.adopt({static_cast<const char*>(data.data()), data.size()}, r);
  cbuf.consume(r.skip + r.length);
  if (ec) {
    // Framing refused: Content-Length with Transfer-Encoding, differing or invalid
    // Content-Length, repeated chunked, a Connection field that is no list of tokens.
    co_return fault{ec == bhttp::error::body_limit ? core::failure::body_too_large
                                                   : core::failure::bad_request,
                    ec.message()};
  }
  co_return fault{};
}

// Reads a request head within timeouts.header_read, notes it in `st` and applies the
// head-level checks. `may_keep_alive`: the connection may stay open after this request.
template <class Client>
asio::awaitable<fault> read_request(Client& client, beast::flat_buffer& cbuf,
                                    request_parser& parser, const config::config& cfg,
                                    request_state& st, bool may_keep_alive) {
  parser.header_limit(static_cast<std::uint32_t>(cfg.limits.header_bytes));
  parser.body_limit(body_limit_for(cfg.limits));
  // At the deadline the read is cancelled, not the socket closed: a client that sent part of a
  // head gets 408 Request Timeout (finish) before the connection closes.
  beast::get_lowest_layer(client).answer_after(cfg.timeouts.header_read);
  if (auto f = co_await read_request_head(client, cbuf, parser, cfg.limits); f) {
    co_return f;
  }
  st.head_read = true;
  const auto& req = parser;
  st.method = req.method_string();
  st.target.assign(req.target().data(), req.target().size());  // keeps its capacity
  st.http11 = req.version() == 11;
  st.version = req.version();
  st.user_agent = req[bhttp::field::user_agent];
  st.referer = req[bhttp::field::referer];
  st.head = req.method() == bhttp::verb::head;
  st.client_keep_alive = req.keep_alive() && may_keep_alive;
  fault f;
  f.error = http::check_request(req, cfg.limits, f.detail);
  co_return f;
}

}  // namespace wk::session
