#pragma once
// Phase 3, the bytes: sending the request (head, prefetched body, the rest of the body as it
// comes) and relaying the response (1xx relayed, a 101 switch, the body in either framing).
// Each returns a fault; progress (bytes, status, reuse) goes into the request_state.

#include "http/header_rules.hpp"
#include "http/response_reader.hpp"
#include "session/request_state.hpp"
#include "session/wire_io.hpp"
#include "wire/request_head.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/write.hpp>

#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wk::session {

using response_parser = http::response_reader;

// A backend's response header may be larger than what we accept from clients.
inline constexpr std::uint32_t upstream_header_limit = 64 * 1024;

// How the response body reaches the client.
enum class response_framing { none, length, chunked, close };

// Writes the response head the client receives into `out` and decides the body's framing:
// `close` when the body must be delimited by closing the connection (HTTP/1.0 client, unknown
// length).
response_framing build_downstream_response(const response_parser& rp, request_state& st,
                                           std::string& out);

// Relays an interim (1xx) response to an HTTP/1.1 client (RFC 9110 section 15.2).
template <class Client>
asio::awaitable<boost::system::error_code> relay_interim(Client& client,
                                                         const response_parser& rp) {
  bhttp::response<bhttp::empty_body> interim;
  interim.result(rp.result_int());
  interim.reason(rp.reason());
  interim.version(11);
  http::build_downstream_response_fields(rp, static_cast<bhttp::fields&>(interim));
  auto [ec, n] = co_await bhttp::async_write(client, interim, nothrow);
  co_return ec;
}

// Relays a 101 answer to an upgrade request; the session then runs the tunnel.
template <class Client>
asio::awaitable<fault> switch_protocols(Client& client, const response_parser& rp,
                                        request_state& st, const config::config& cfg) {
  bhttp::response<bhttp::empty_body> res;
  res.result(bhttp::status::switching_protocols);
  res.reason(rp.reason());
  res.version(11);
  http::build_downstream_response_fields(rp, static_cast<bhttp::fields&>(res), true);
  beast::get_lowest_layer(client).expires_after(cfg.timeouts.body_idle);
  auto [ec, n] = co_await bhttp::async_write(client, res, nothrow);
  st.response_started = true;
  st.status = 101;
  if (ec) {
    co_return fault{core::failure::client_gone};
  }
  st.tunnel = true;
  st.upstream_reusable = false;
  st.client_keep_alive = false;
  co_return fault{};
}

// Sends the last `left` bytes of a request body of known length from the client to the
// backend as they arrive: what is already in `cbuf` first (bytes after the body stay there: a
// pipelined request), then reads of up to 64 KiB.
template <class Up, class Client>
asio::awaitable<fault> relay_request_rest(Up& up, Client& client, beast::flat_buffer& cbuf,
                                          std::uint64_t left, request_state& st,
                                          const config::config& cfg) {
  using core::failure;
  auto& lowest = beast::get_lowest_layer(up);
  // Bytes taken from here on cannot be sent again: no retry on another connection.
  st.body_read_live = left > 0;
  while (left > 0) {
    if (cbuf.size() == 0) {
      const auto want = static_cast<std::size_t>(
          std::min<std::uint64_t>({left, body_read_size, cbuf.max_size()}));
      beast::get_lowest_layer(client).expires_after(cfg.timeouts.body_idle);
      auto [rec, rn] = co_await client.async_read_some(cbuf.prepare(want), nothrow);
      cbuf.commit(rn);
      if (rec) {
        co_return fault{is_timeout(rec) ? failure::client_timeout : failure::client_gone,
                        "reading request body: " + rec.message()};
      }
      continue;
    }
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(cbuf.size(), left));
    lowest.expires_after(cfg.timeouts.body_idle);
    auto [wec, wn] = co_await write_plain(up, {}, static_cast<const char*>(cbuf.data().data()), n);
    if (wec) {
      co_return fault{is_timeout(wec) ? failure::upstream_timeout : failure::upstream_reset,
                      "sending request body: " + wec.message(), !st.body_read_live};
    }
    cbuf.consume(n);
    left -= n;
    st.bytes_in += n;
  }
  st.request_sent = true;
  st.request_body_done = true;
  co_return fault{};
}

// Sends the request on `up`: the header with the prefetched body bytes first (the whole
// request, for most), then the rest of the body streamed from the client.
template <class Up, class Client>
asio::awaitable<fault> send_request(Up& up, Client& client, beast::flat_buffer& cbuf,
                                    request_parser& parser, std::string_view head,
                                    body_buffer& chunk, request_state& st,
                                    const config::config& cfg, bool expect_continue) {
  using core::failure;
  auto& lowest = beast::get_lowest_layer(up);
  const bool chunked = parser.chunked();
  std::size_t got = st.prefetched;
  bool done = parser.is_done();
  reserve_for_body(cbuf, parser.content_length(), done);
  for (bool first = true;; first = false) {
    if (!first) {
      parser.body().data = chunk.data();
      parser.body().size = chunk.size();
      beast::get_lowest_layer(client).expires_after(cfg.timeouts.body_idle);
      st.body_read_live = true;
      auto rec = co_await read_parsed(client, cbuf, parser);
      if (rec == bhttp::error::need_buffer) {
        rec = {};
      }
      if (rec) {
        failure f = failure::client_gone;
        if (rec == bhttp::error::body_limit) {
          f = failure::body_too_large;
        } else if (is_timeout(rec)) {
          f = failure::client_timeout;
        } else if (is_http_parse_error(rec) && rec != bhttp::error::partial_message &&
                   rec != bhttp::error::end_of_stream) {
          f = failure::bad_request;  // invalid chunk framing
        }
        co_return fault{f, "reading request body: " + rec.message()};
      }
      got = chunk.size() - parser.body().size;
      st.bytes_in += got;
      done = parser.is_done();
      if (got == 0 && !done) {
        continue;  // e.g. only a chunk header was parsed
      }
    }
    lowest.expires_after(first ? cfg.timeouts.upstream_response : cfg.timeouts.body_idle);
    boost::system::error_code wec;
    std::size_t written = 0;
    if (!chunked) {
      if (first || got > 0) {
        auto [e, n] =
            co_await write_plain(up, first ? head : std::string_view(), chunk.data(), got);
        wec = e;
        written = n;
      }
    } else {
      // The trailer fields that may be passed on (origin route only).
      const std::string_view trailers =
          done && st.relay_trailers ? parser.trailers() : std::string_view();
      wec = co_await write_piece(up, first ? head : std::string_view(), chunk.data(), got, chunked,
                                 done, trailers, &written);
    }
    if (first && written >= head.size()) {
      st.request_head_sent = true;  // a failure from here on may come with an early answer
    }
    if (wec) {
      // Retried on another connection only if every byte sent so far can be sent again.
      co_return fault{is_timeout(wec) ? failure::upstream_timeout : failure::upstream_reset,
                      (first ? "sending request: " : "sending request body: ") + wec.message(),
                      !st.body_read_live};
    }
    if (done) {
      st.request_sent = true;
      co_return fault{};
    }
    if (first && expect_continue && st.bytes_in == 0) {
      // The proxy answers 100-continue itself once the backend is connected (RFC 9110 10.1.1);
      // the backend never sees Expect.
      beast::get_lowest_layer(client).expires_after(cfg.timeouts.body_idle);
      if (auto ec = co_await write_all(client, "HTTP/1.1 100 Continue\r\n\r\n"); ec) {
        co_return fault{failure::client_gone};
      }
    }
    if (first && !chunked && parser.content_length()) {
      // The rest of a body of known length goes as it comes: no parsing, no copy into the chunk.
      co_return co_await relay_request_rest(up, client, cbuf,
                                            *parser.content_length() - st.bytes_in, st, cfg);
    }
  }
}

// Relays a response body of `length` bytes (after `head`, sent with the first of them) from the
// backend as the bytes arrive: straight from the read buffer to the client, up to 64 KiB at a
// time. Bytes past the body stay in `ubuf` (the connection is then not reused).
template <class Up, class Client>
asio::awaitable<fault> relay_known_length(Up& up, beast::flat_buffer& ubuf, Client& client,
                                          std::string_view head, std::uint64_t length,
                                          request_state& st, const config::config& cfg) {
  using core::failure;
  auto& lowest = beast::get_lowest_layer(up);
  std::uint64_t left = length;
  for (;;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(ubuf.size(), left));
    if (n > 0 || !head.empty()) {
      beast::get_lowest_layer(client).expires_after(cfg.timeouts.body_idle);
      auto [wec, wn] =
          co_await write_plain(client, head, static_cast<const char*>(ubuf.data().data()), n);
      head = {};
      st.response_started = true;
      if (wec) {
        co_return fault{is_timeout(wec) ? failure::client_timeout : failure::client_gone,
                        "writing response: " + wec.message()};
      }
      ubuf.consume(n);
      left -= n;
      st.bytes_out += n;
    }
    if (left == 0) {
      co_return fault{};
    }
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(left, body_read_size));
    lowest.expires_after(cfg.timeouts.upstream_response);
    auto [rec, rn] = co_await up.async_read_some(ubuf.prepare(want), nothrow);
    ubuf.commit(rn);
    if (rec) {
      co_return fault{is_timeout(rec) ? failure::upstream_timeout : failure::upstream_reset,
                      "reading response body: " +
                          (rec == asio::error::eof
                               ? std::string("end of stream before the whole body")
                               : rec.message())};
    }
  }
}

// ---- Early answers (RFC 9112 section 9.3, RFC 9110 section 15)
// A backend may answer before it has read the whole request body (a 413 halfway through an
// upload) and close. Sending the rest then fails; the answer is still in the socket's receive
// queue (Linux keeps received data readable after a reset), and it is relayed instead of a
// 502. The rest of the client's body is then read and discarded when it is short enough, so
// the connection carries the next request ("drained"), or the connection is closed after the
// answer ("closed"), with a lingering close (finish.hpp) so that the client gets to read it.

// The most of a request body read and discarded after an early answer; a longer rest closes
// the connection instead.
inline constexpr std::uint64_t early_answer_drain_limit = 1024 * 1024;

// Whether a failure sending the request may have been caused by an answer already sent: the
// whole head went out, the request has a body, and the backend's connection broke.
inline bool early_answer_possible(const fault& f, const request_state& st,
                                  const request_parser& parser) {
  return f.error == core::failure::upstream_reset && st.request_head_sent && !st.response_started &&
         (parser.chunked() || parser.content_length().value_or(0) > 0);
}

// Whether the rest of the body can be drained after an early answer (else the answer carries
// Connection: close): a known rest within the limit, or a chunked body (drained up to the
// limit). A client that waits for 100 Continue and has sent nothing gets no body to drain.
inline bool may_drain(const request_state& st, const request_parser& parser, bool expect_continue) {
  if (expect_continue && st.bytes_in == 0) {
    return false;
  }
  if (parser.chunked() || parser.is_done()) {
    return true;
  }
  const auto length = parser.content_length().value_or(0);
  return length >= st.bytes_in && length - st.bytes_in <= early_answer_drain_limit;
}

// Reads and discards the rest of the request body after an early answer: what `cbuf` holds
// first, then reads within timeouts.body_idle each. Returns false when the body does not end
// within early_answer_drain_limit more bytes, or the client fails.
template <class Client>
asio::awaitable<bool> drain_request_body(Client& client, beast::flat_buffer& cbuf,
                                         request_parser& parser, body_buffer& chunk,
                                         request_state& st, const config::config& cfg) {
  auto& lowest = beast::get_lowest_layer(client);
  if (!parser.chunked()) {
    if (parser.is_done()) {
      co_return true;
    }
    const auto length = parser.content_length().value_or(0);
    if (length < st.bytes_in || length - st.bytes_in > early_answer_drain_limit) {
      co_return false;
    }
    std::uint64_t left = length - st.bytes_in;
    while (left > 0) {
      if (cbuf.size() == 0) {
        const auto want = static_cast<std::size_t>(
            std::min<std::uint64_t>({left, body_read_size, cbuf.max_size()}));
        lowest.expires_after(cfg.timeouts.body_idle);
        auto [rec, rn] = co_await client.async_read_some(cbuf.prepare(want), nothrow);
        cbuf.commit(rn);
        if (rec) {
          co_return false;
        }
        continue;
      }
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(cbuf.size(), left));
      cbuf.consume(n);
      left -= n;
      st.bytes_in += n;
    }
    st.request_body_done = true;
    co_return true;
  }
  std::uint64_t budget = early_answer_drain_limit;
  while (!parser.is_done()) {
    parser.body().data = chunk.data();
    parser.body().size = chunk.size();
    lowest.expires_after(cfg.timeouts.body_idle);
    auto rec = co_await read_parsed(client, cbuf, parser);
    if (rec && rec != bhttp::error::need_buffer) {
      co_return false;
    }
    const auto got = chunk.size() - parser.body().size;
    st.bytes_in += got;
    if (got > budget) {
      co_return false;
    }
    budget -= got;
  }
  co_return true;
}

// Reads the backend's response header (relaying 1xx) and streams the response to the client.
template <class Up, class Client>
asio::awaitable<fault> relay_response(Up& up, beast::flat_buffer& ubuf, http::head_storage& fields,
                                      Client& client, body_buffer& chunk, request_state& st,
                                      const config::config& cfg) {
  using core::failure;
  auto& lowest = beast::get_lowest_layer(up);
  std::optional<response_parser> rp;
  for (;;) {
    rp.emplace(fields);
    rp->header_limit(upstream_header_limit);
    rp->body_limit(std::numeric_limits<std::uint64_t>::max());
    if (st.head) {
      rp->skip(true);
    }
    lowest.expires_after(cfg.timeouts.upstream_response);
    auto before = ubuf.size();
    boost::system::error_code ec;
    while (!rp->is_header_done()) {
      ec = co_await read_parsed(up, ubuf, *rp);
      if (ec) {
        break;
      }
    }
    if (ec) {
      if (is_timeout(ec)) {
        co_return fault{failure::upstream_timeout,
                        "no response header within " +
                            std::to_string(cfg.timeouts.upstream_response.count()) + " ms"};
      }
      if (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
          ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
          ec == bhttp::error::partial_message) {
        co_return fault{failure::upstream_reset, "reading response header: " + ec.message(),
                        ec != bhttp::error::partial_message && before == 0 && !st.body_read_live};
      }
      co_return fault{failure::upstream_bad_response, "reading response header: " + ec.message()};
    }
    auto status = rp->result_int();
    if (status < 100) {
      // Beast reads any three digits; "000" would reach the client as "HTTP/1.1 0", which is
      // no status line at all (RFC 9110 section 15: codes are 100 to 599).
      co_return fault{failure::upstream_bad_response,
                      "response status code " + std::to_string(status) + " below 100"};
    }
    if (status >= 100 && status < 200) {
      if (status == 101) {
        if (!st.upgrade_requested) {
          co_return fault{failure::upstream_bad_response,
                          "101 Switching Protocols without an upgrade request"};
        }
        co_return co_await switch_protocols(client, *rp, st, cfg);
      }
      if (st.http11) {
        beast::get_lowest_layer(client).expires_after(cfg.timeouts.body_idle);
        if (auto wec = co_await relay_interim(client, *rp); wec) {
          co_return fault{failure::client_gone};
        }
      }
      continue;
    }
    break;
  }
  if (rp->count(bhttp::field::transfer_encoding) > 0) {
    // Only chunked can be re-framed; any other coding would reach the client mislabelled.
    std::vector<std::string_view> codings;
    for (const auto& f : rp->fields()) {
      if (f.name() == bhttp::field::transfer_encoding) {
        codings.push_back(f.value());
      }
    }
    if (wire::check_transfer_encoding(codings) != wire::coding_verdict::chunked) {
      co_return fault{failure::upstream_bad_response,
                      "response Transfer-Encoding other than chunked"};
    }
  }

  auto& head = st.response_head;
  head.clear();
  head.reserve(512);
  const auto framing = build_downstream_response(*rp, st, head);
  st.status = rp->result_int();
  reserve_for_body(ubuf, rp->content_length(), rp->is_done());
  if (framing == response_framing::length && !rp->is_done()) {
    // A body of known length is relayed as it comes: no parsing, no copy into the chunk.
    auto f = co_await relay_known_length(up, ubuf, client, head, *rp->content_length(), st, cfg);
    if (!f) {
      // Bytes past the body (a backend out of step) end the connection.
      st.upstream_reusable = st.request_sent && rp->keep_alive() && ubuf.size() == 0;
    }
    co_return f;
  }
  for (;;) {
    bool done = rp->is_done();
    std::size_t got = 0;
    if (!done) {
      rp->body().data = chunk.data();
      rp->body().size = chunk.size();
      lowest.expires_after(cfg.timeouts.upstream_response);
      auto rec = co_await read_parsed(up, ubuf, *rp);
      if (rec == bhttp::error::need_buffer) {
        rec = {};
      }
      if (rec) {
        co_return fault{is_timeout(rec) ? failure::upstream_timeout
                        : (rec == bhttp::error::partial_message || rec == asio::error::eof ||
                           rec == asio::error::connection_reset)
                            ? failure::upstream_reset
                            : failure::upstream_bad_response,
                        "reading response body: " + rec.message()};
      }
      got = chunk.size() - rp->body().size;
      done = rp->is_done();
      if (got == 0 && !done) {
        continue;
      }
    }
    beast::get_lowest_layer(client).expires_after(cfg.timeouts.body_idle);
    const bool chunked_out = framing == response_framing::chunked;
    auto wec = co_await write_piece(client, head, chunk.data(), got, chunked_out, done,
                                    done && chunked_out ? rp->trailers() : std::string_view());
    head.clear();  // sent with the first piece
    st.response_started = true;
    if (wec) {
      co_return fault{is_timeout(wec) ? failure::client_timeout : failure::client_gone,
                      "writing response: " + wec.message()};
    }
    st.bytes_out += got;
    if (done) {
      break;
    }
  }
  // A close-delimited upstream body ends with the connection: it cannot be reused.
  bool upstream_delimited =
      rp->chunked() || rp->content_length() || st.head || st.status == 204 || st.status == 304;
  st.upstream_reusable =
      st.request_sent && rp->keep_alive() && upstream_delimited && ubuf.size() == 0;
  if (framing == response_framing::close) {
    st.client_keep_alive = false;
  }
  co_return fault{};
}

}  // namespace wk::session
