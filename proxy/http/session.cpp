#include "http/session.hpp"

#include "core/failure.hpp"
#include "http/header_rules.hpp"
#include "http/local_reply.hpp"
#include "http/response_reader.hpp"
#include "http/upstream_request.hpp"
#include "net/tls_server.hpp"
#include "net/tunnel.hpp"
#include "observe/counters.hpp"
#include "observe/log.hpp"
#include "observe/metrics.hpp"
#include "upstream/connector.hpp"
#include "validation/events.hpp"
#include "validation/plan.hpp"
#include "wire/request_head.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <array>
#include <charconv>
#include <chrono>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace wk::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using steady = std::chrono::steady_clock;

namespace {

constexpr auto nothrow = net::as_tuple(net::use_awaitable);

// A backend's response header may be larger than what we accept from clients.
constexpr std::uint32_t upstream_header_limit = 64 * 1024;

using request_parser = bhttp::request_parser<bhttp::buffer_body>;
using response_parser = response_reader;

// Everything known about one request, filled in as it moves through the stages; the last
// stage turns it into the access-log line.
struct request_state {
  steady::time_point start = steady::now();
  std::chrono::system_clock::time_point wall = std::chrono::system_clock::now();
  std::string method;
  std::string target;
  routing::decision decision;
  const upstream::target* upstream = nullptr;
  unsigned status = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  core::failure error = core::failure::none;
  std::string detail;
  bool http11 = true;
  bool head = false;
  bool client_keep_alive = false;
  bool response_started = false;      // bytes of a response reached the client
  bool request_sent = false;          // the whole request reached the backend
  bool request_body_done = false;     // a body of known length was relayed without the parser
  std::size_t prefetched = 0;         // body bytes parsed into the body buffer before connecting
  bool body_read_live = false;        // body bytes were read while streaming (no resend possible)
  bool last = false;                  // a connection limit: this answer closes the connection
  const bool* stopping = nullptr;     // the worker is stopping: the answer closes the connection
  observe::gauge* tunnels = nullptr;  // the worker's count of open tunnels
  bool upstream_reusable = false;     // the backend connection can go back to the pool
  bool retryable = false;             // failed on a reused connection before any exchange
  bool upgrade_requested = false;     // origin route, Upgrade + Connection: upgrade forwarded
  bool tunnel = false;                // the backend answered 101: bytes flow both ways now
  // The validation route (before the action may have passed the request to the origin).
  bool validation_hit = false;
  validation::action_kind vaction = validation::action_kind::forward;
  config::validation_mode vmode = config::validation_mode::forward;
  // Fields of the request head, for the log. They point into the request parser, which
  // handle_request keeps until after the last write_access_log; trailer fields that Beast adds
  // to the parsed header later are new list nodes and never move these.
  std::string_view user_agent;
  std::string_view referer;
  unsigned version = 0;       // 10 or 11 once the head is parsed
  std::string_view location;  // redirect: the Location sent (points into the config snapshot)
};

boost::optional<std::uint64_t> body_limit_for(const config::limits& l) {
  if (l.max_body_bytes == 0) {
    return std::numeric_limits<std::uint64_t>::max();
  }
  return l.max_body_bytes;
}

// RFC 9110 section 9.2.2: a request the client may send again without changing the outcome.
bool idempotent(bhttp::verb v) {
  switch (v) {
  case bhttp::verb::get:
  case bhttp::verb::head:
  case bhttp::verb::options:
  case bhttp::verb::trace:
  case bhttp::verb::put:
  case bhttp::verb::delete_:
    return true;
  default:
    return false;
  }
}

bool is_timeout(const boost::system::error_code& ec) {
  return ec == beast::error::timeout;
}

bool is_http_parse_error(const boost::system::error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_chunk).category();
}

core::failure failure_for(wire::head_status s) {
  switch (s) {
  case wire::head_status::invalid:
    return core::failure::bad_request;
  case wire::head_status::bad_version:
    return core::failure::version_not_supported;
  case wire::head_status::target_too_long:
    return core::failure::target_too_long;
  case wire::head_status::too_large:
    return core::failure::header_too_large;
  case wire::head_status::incomplete:
  case wire::head_status::complete:
    break;
  }
  return core::failure::internal;
}

// Reads until `cbuf` holds a whole request head, checks its raw bytes strictly
// (request_head_scanner), then lets Beast parse exactly those bytes into `parser`. One header
// deadline covers the whole head (slowloris). On failure, `detail` says why.
template <class Client>
net::awaitable<core::failure> read_request_head(Client& client, beast::flat_buffer& cbuf,
                                                request_parser& parser,
                                                const config::limits& limits, std::string& detail) {
  wire::request_head_scanner scanner{
      wire::head_limits{limits.header_bytes, limits.target_bytes, limits.header_count}};
  wire::head_scan r;
  for (;;) {
    auto data = cbuf.data();
    r = scanner.scan({static_cast<const char*>(data.data()), data.size()});
    if (r.status == wire::head_status::complete) {
      break;
    }
    if (r.status != wire::head_status::incomplete) {
      detail = r.reason;
      co_return failure_for(r.status);
    }
    auto room = cbuf.max_size() - cbuf.size();
    if (room == 0) {
      detail = "request header over the limit";
      co_return core::failure::header_too_large;
    }
    auto [ec, n] =
        co_await client.async_read_some(cbuf.prepare(std::min<std::size_t>(room, 4096)), nothrow);
    if (ec) {
      co_return is_timeout(ec) && cbuf.size() > 0 ? core::failure::header_timeout
                                                  : core::failure::client_gone;
    }
    cbuf.commit(n);
  }
  cbuf.consume(r.skip);
  boost::system::error_code ec;
  auto used = parser.put(net::buffer(cbuf.data().data(), r.length), ec);
  cbuf.consume(used);
  if (ec || !parser.is_header_done()) {
    // Framing Beast refuses: CL with TE, differing or invalid Content-Length, repeated chunked.
    detail = ec ? ec.message() : "incomplete request header";
    co_return ec == bhttp::error::body_limit ? core::failure::body_too_large
                                             : core::failure::bad_request;
  }
  co_return core::failure::none;
}

// Chunked framing never has a bare LF: when the parser waits for more and leaves bytes
// unconsumed, they start a framing line (chunk size, the CRLF after data, a trailer); a bare LF
// there means the parser would wait forever. Call only in that state.
bool bare_lf_in_chunk_framing(const request_parser& parser, const beast::flat_buffer& cbuf) {
  if (!parser.chunked() || parser.is_done()) {
    return false;
  }
  auto data = cbuf.data();
  std::string_view rest{static_cast<const char*>(data.data()), data.size()};
  for (auto i = rest.find('\n'); i != std::string_view::npos; i = rest.find('\n', i + 1)) {
    if (i == 0 || rest[i - 1] != '\r') {
      return true;
    }
  }
  return false;
}

// Parses the body bytes that arrived with the header (the whole body, for most requests) into
// `chunk` before any backend is involved, so that a malformed body is a 400 that reaches no
// backend, and a small request goes out in one write.
core::failure prefetch_body(request_parser& parser, beast::flat_buffer& cbuf, body_buffer& chunk,
                            request_state& st) {
  std::size_t filled = 0;
  bool stuck = false;  // the parser waits for more and leaves bytes unconsumed: a framing line
  while (!parser.is_done() && cbuf.size() > 0 && filled < chunk.size()) {
    auto room = chunk.size() - filled;
    parser.get().body().data = chunk.data() + filled;
    parser.get().body().size = room;
    boost::system::error_code ec;
    auto used = parser.put(cbuf.data(), ec);
    cbuf.consume(used);
    filled += room - parser.get().body().size;
    if (ec == bhttp::error::need_more || ec == bhttp::error::need_buffer) {
      if (used == 0) {
        stuck = ec == bhttp::error::need_more;
        break;
      }
      continue;
    }
    if (ec) {
      st.detail = "request body: " + ec.message();
      st.prefetched = 0;
      return ec == bhttp::error::body_limit ? core::failure::body_too_large
                                            : core::failure::bad_request;
    }
  }
  st.prefetched = filled;
  st.bytes_in += filled;
  if (stuck && bare_lf_in_chunk_framing(parser, cbuf)) {
    st.detail = "request body: bare LF in chunked framing";
    return core::failure::bad_request;
  }
  return core::failure::none;
}

template <class Stream>
net::awaitable<boost::system::error_code> write_all(Stream& s, std::string_view bytes) {
  auto [ec, n] = co_await net::async_write(s, net::buffer(bytes.data(), bytes.size()), nothrow);
  co_return ec;
}

// A head and a piece of body as one buffer sequence held by value: the write operation keeps
// its own copy, so no coroutine frame has to hold it.
struct head_and_body {
  std::array<net::const_buffer, 2> parts;
  std::size_t count = 0;
  const net::const_buffer* begin() const { return parts.data(); }
  const net::const_buffer* end() const { return parts.data() + count; }
};

// Writes `head` and `size` bytes at `data` (together not empty) as they are, in one
// scatter/gather write. Not a coroutine: the common case costs one operation and nothing else.
template <class Stream>
auto write_plain(Stream& s, std::string_view head, const char* data, std::size_t size) {
  head_and_body seq;
  if (!head.empty()) {
    seq.parts[seq.count++] = net::buffer(head.data(), head.size());
  }
  if (size > 0) {
    seq.parts[seq.count++] = net::buffer(data, size);
  }
  return net::async_write(s, seq, nothrow);
}

// Writes `head` (may be empty) and one piece of a body in one scatter/gather write: the bytes
// as they are, or as one chunk of a chunked body followed, when `last`, by the last chunk.
template <class Stream>
net::awaitable<boost::system::error_code> write_piece(Stream& s, std::string_view head,
                                                      const char* data, std::size_t size,
                                                      bool chunked, bool last) {
  if (!chunked) {
    if (head.empty() && size == 0) {
      co_return boost::system::error_code{};
    }
    auto [ec, n] = co_await write_plain(s, head, data, size);
    co_return ec;
  }
  std::array<net::const_buffer, 4> bufs;
  std::size_t n = 0;
  char size_line[24];
  if (!head.empty()) {
    bufs[n++] = net::buffer(head.data(), head.size());
  }
  if (chunked) {
    if (size > 0) {
      auto end = std::to_chars(size_line, size_line + sizeof size_line - 2, size, 16).ptr;
      *end++ = '\r';
      *end++ = '\n';
      bufs[n++] = net::buffer(size_line, static_cast<std::size_t>(end - size_line));
      bufs[n++] = net::buffer(data, size);
      bufs[n++] = last ? net::buffer("\r\n0\r\n\r\n", 7) : net::buffer("\r\n", 2);
    } else if (last) {
      bufs[n++] = net::buffer("0\r\n\r\n", 5);
    }
  } else if (size > 0) {
    bufs[n++] = net::buffer(data, size);
  }
  if (n == 0) {
    co_return boost::system::error_code{};
  }
  auto [ec, written] =
      co_await net::async_write(s, std::span<const net::const_buffer>(bufs.data(), n), nothrow);
  co_return ec;
}

// Beast's async_read_some over a parser, without its detours: bytes already in `buf` are
// parsed first with no I/O (the usual case once a header has arrived), and no completion is
// posted. need_buffer means the body buffer is full.
template <class Stream, bool isRequest>
net::awaitable<boost::system::error_code> read_parsed(Stream& s, beast::flat_buffer& buf,
                                                      bhttp::basic_parser<isRequest>& p) {
  boost::system::error_code ec;
  if (buf.size() > 0) {
    buf.consume(p.put(buf.data(), ec));
    if (ec != bhttp::error::need_more) {
      co_return ec;
    }
  }
  for (;;) {
    const auto size = beast::read_size(buf, 65536);
    if (size == 0) {
      co_return bhttp::error::buffer_overflow;
    }
    auto [rec, n] = co_await s.async_read_some(buf.prepare(size), nothrow);
    buf.commit(n);
    if (rec == net::error::eof) {
      if (!p.got_some()) {
        co_return bhttp::error::end_of_stream;
      }
      rec = {};
      p.put_eof(rec);  // a close-delimited body ends here, anything else is partial
      co_return rec;
    }
    if (rec) {
      co_return rec;
    }
    ec = {};
    buf.consume(p.put(buf.data(), ec));
    if (ec != bhttp::error::need_more) {
      co_return ec;
    }
  }
}

// Sends the local error reply for st.error (nothing when the failure has no status, or when a
// response already started: then closing the connection is the only signal left).
template <class Client>
net::awaitable<void> send_error(Client& client, request_state& st, const config::timeouts& to) {
  auto status = core::status_for(st.error);
  if (status == 0 || st.response_started) {
    co_return;
  }
  auto bytes = error_reply(st.error, st.detail, st.head);
  beast::get_lowest_layer(client).expires_after(to.body_idle);
  st.status = status;
  st.client_keep_alive = false;
  st.response_started = true;
  co_await write_all(client, bytes);
}

// The fields, target and framing a backend receives (see upstream_request.hpp).
void build_upstream_request(const request_parser& parser, const request_state& st,
                            const client_info& conn, const config::config& cfg, std::string& out) {
  const auto& req = parser.get();
  forward_options opt;
  opt.validation_route = st.decision.kind == routing::route_kind::validation;
  opt.x_forwarded_for = cfg.headers.x_forwarded_for;
  opt.x_forwarded_proto = cfg.headers.x_forwarded_proto;
  opt.client_ip = conn.peer_ip;
  opt.proto = conn.tls ? "https" : "http";
  opt.authority = st.decision.authority;
  opt.default_host = st.upstream->cfg.host;
  if (st.upgrade_requested) {
    opt.upgrade = req[bhttp::field::upgrade];
  }
  body_framing framing;
  framing.chunked = parser.chunked();
  if (auto cl = parser.content_length(); cl && !framing.chunked) {
    framing.length = *cl;
  }
  build_upstream_request(req, st.decision, opt, framing, out);
}

// How the response body reaches the client.
enum class response_framing { none, length, chunked, close };

// Writes the response head the client receives into `out` and decides the body's framing:
// `close` when the body must be delimited by closing the connection (HTTP/1.0 client, unknown
// length).
response_framing build_downstream_response(const response_parser& rp, request_state& st,
                                           std::string& out) {
  const auto& in = rp;
  if (st.stopping != nullptr && *st.stopping) {
    st.client_keep_alive = false;  // a graceful stop began while this request was in flight
  }
  const auto status = in.result_int();
  out.clear();
  char digits[24];
  out.append("HTTP/1.1 ");
  out.append(digits, std::to_chars(digits, digits + sizeof digits, status).ptr);
  out.append(" ", 1);
  const auto reason = in.reason();
  const std::string_view text =
      reason.empty() ? std::string_view(bhttp::obsolete_reason(static_cast<bhttp::status>(status)))
                     : std::string_view(reason);
  out.append(text);
  out.append("\r\n", 2);
  head_writer fields(out);
  build_downstream_response_fields(in, fields);
  bool bodiless = st.head || status == 204 || status == 304;
  response_framing framing = response_framing::length;
  if (bodiless) {
    // HEAD and 304 answers describe a body they do not carry: keep the length as sent.
    framing = response_framing::none;
    auto cl = in[bhttp::field::content_length];
    if (!cl.empty() && status != 204) {
      fields.insert(bhttp::field::content_length, cl);
    }
  } else if (!rp.chunked() && rp.content_length()) {
    const auto end = std::to_chars(digits, digits + sizeof digits, *rp.content_length()).ptr;
    fields.insert(bhttp::field::content_length, std::string_view(digits, end - digits));
  } else if (st.http11) {
    framing = response_framing::chunked;
    fields.insert(bhttp::field::transfer_encoding, "chunked");
  } else {
    framing = response_framing::close;  // HTTP/1.0 client, no known length: the close ends it
    st.client_keep_alive = false;
  }
  if (!st.client_keep_alive) {
    fields.insert(bhttp::field::connection, "close");
  } else if (!st.http11) {
    fields.insert(bhttp::field::connection, "keep-alive");
  }
  out.append("\r\n", 2);
  return framing;
}

// Relays an interim (1xx) response to an HTTP/1.1 client (RFC 9110 section 15.2).
template <class Client>
net::awaitable<boost::system::error_code> relay_interim(Client& client, const response_parser& rp) {
  bhttp::response<bhttp::empty_body> interim;
  interim.result(rp.result_int());
  interim.reason(rp.reason());
  interim.version(11);
  build_downstream_response_fields(rp, static_cast<bhttp::fields&>(interim));
  auto [ec, n] = co_await bhttp::async_write(client, interim, nothrow);
  co_return ec;
}

// Relays a 101 answer to an upgrade request; the session then runs the tunnel.
template <class Client>
net::awaitable<void> switch_protocols(Client& client, const response_parser& rp, request_state& st,
                                      const config::config& cfg) {
  bhttp::response<bhttp::empty_body> res;
  res.result(bhttp::status::switching_protocols);
  res.reason(rp.reason());
  res.version(11);
  build_downstream_response_fields(rp, static_cast<bhttp::fields&>(res), true);
  beast::get_lowest_layer(client).expires_after(cfg.timeouts.body_idle);
  auto [ec, n] = co_await bhttp::async_write(client, res, nothrow);
  st.response_started = true;
  st.status = 101;
  if (ec) {
    st.error = core::failure::client_gone;
    co_return;
  }
  st.tunnel = true;
  st.upstream_reusable = false;
  st.client_keep_alive = false;
}

// Beast reads at most the free capacity of the buffer it parses from (512 bytes minimum): without
// room, a large body would move in sub-kilobyte steps, two system calls each. Room for up to
// 64 KiB per read is made when more body is to come; the buffers shrink back when idle.
constexpr std::size_t body_read_size = 4 * body_chunk_size;

void reserve_for_body(beast::flat_buffer& buf, boost::optional<std::uint64_t> content_length,
                      bool done) {
  if (done) {
    return;
  }
  std::size_t want = body_read_size;
  if (content_length && *content_length < want) {
    want = static_cast<std::size_t>(*content_length);
  }
  const auto target = std::min(buf.size() + want, buf.max_size());
  if (buf.capacity() < target) {
    buf.reserve(target);
  }
}

// Sends the last `left` bytes of a request body of known length from the client to the
// backend as they arrive: what is already in `cbuf` first (bytes after the body stay there: a
// pipelined request), then reads of up to 64 KiB.
template <class Up, class Client>
net::awaitable<void> relay_request_rest(Up& up, Client& client, beast::flat_buffer& cbuf,
                                        std::uint64_t left, request_state& st,
                                        const config::config& cfg) {
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
        st.error = is_timeout(rec) ? core::failure::client_timeout : core::failure::client_gone;
        st.detail = "reading request body: " + rec.message();
        co_return;
      }
      continue;
    }
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(cbuf.size(), left));
    lowest.expires_after(cfg.timeouts.body_idle);
    auto [wec, wn] = co_await write_plain(up, {}, static_cast<const char*>(cbuf.data().data()), n);
    if (wec) {
      st.error = is_timeout(wec) ? core::failure::upstream_timeout : core::failure::upstream_reset;
      st.detail = "sending request body: " + wec.message();
      st.retryable = !st.body_read_live;
      co_return;
    }
    cbuf.consume(n);
    left -= n;
    st.bytes_in += n;
  }
  st.request_sent = true;
  st.request_body_done = true;
}

// Sends the request on `up`: the header with the prefetched body bytes first (the whole
// request, for most), then the rest of the body streamed from the client.
template <class Up, class Client>
net::awaitable<void> send_request(Up& up, Client& client, beast::flat_buffer& cbuf,
                                  request_parser& parser, std::string_view head, body_buffer& chunk,
                                  request_state& st, const config::config& cfg,
                                  bool expect_continue) {
  auto& lowest = beast::get_lowest_layer(up);
  const bool chunked = parser.chunked();
  std::size_t got = st.prefetched;
  bool done = parser.is_done();
  reserve_for_body(cbuf, parser.content_length(), done);
  for (bool first = true;; first = false) {
    if (!first) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      beast::get_lowest_layer(client).expires_after(cfg.timeouts.body_idle);
      st.body_read_live = true;
      auto rec = co_await read_parsed(client, cbuf, parser);
      if (rec == bhttp::error::need_buffer) {
        rec = {};
      }
      if (rec) {
        if (rec == bhttp::error::body_limit) {
          st.error = core::failure::body_too_large;
        } else if (is_timeout(rec)) {
          st.error = core::failure::client_timeout;
        } else if (is_http_parse_error(rec) && rec != bhttp::error::partial_message &&
                   rec != bhttp::error::end_of_stream) {
          st.error = core::failure::bad_request;  // invalid chunk framing
        } else {
          st.error = core::failure::client_gone;
        }
        st.detail = "reading request body: " + rec.message();
        co_return;
      }
      got = chunk.size() - parser.get().body().size;
      st.bytes_in += got;
      done = parser.is_done();
      if (got == 0 && !done) {
        continue;  // e.g. only a chunk header was parsed
      }
    }
    lowest.expires_after(first ? cfg.timeouts.upstream_response : cfg.timeouts.body_idle);
    boost::system::error_code wec;
    if (!chunked) {
      if (first || got > 0) {
        auto [e, n] =
            co_await write_plain(up, first ? head : std::string_view(), chunk.data(), got);
        wec = e;
      }
    } else {
      wec = co_await write_piece(up, first ? head : std::string_view(), chunk.data(), got, chunked,
                                 done);
    }
    if (wec) {
      st.error = is_timeout(wec) ? core::failure::upstream_timeout : core::failure::upstream_reset;
      st.detail = (first ? "sending request: " : "sending request body: ") + wec.message();
      // Retried on another connection only if every byte sent so far can be sent again.
      st.retryable = !st.body_read_live;
      co_return;
    }
    if (done) {
      st.request_sent = true;
      co_return;
    }
    if (first && expect_continue && st.bytes_in == 0) {
      // The proxy answers 100-continue itself once the backend is connected (RFC 9110 10.1.1);
      // the backend never sees Expect.
      beast::get_lowest_layer(client).expires_after(cfg.timeouts.body_idle);
      if (auto ec = co_await write_all(client, "HTTP/1.1 100 Continue\r\n\r\n"); ec) {
        st.error = core::failure::client_gone;
        co_return;
      }
    }
    if (first && !chunked && parser.content_length()) {
      // The rest of a body of known length goes as it comes: no parsing, no copy into the chunk.
      co_await relay_request_rest(up, client, cbuf, *parser.content_length() - st.bytes_in, st,
                                  cfg);
      co_return;
    }
  }
}

// Relays a response body of `length` bytes (after `head`, sent with the first of them) from the
// backend as the bytes arrive: straight from the read buffer to the client, up to 64 KiB at a
// time. Bytes past the body stay in `ubuf` (the connection is then not reused).
template <class Up, class Client>
net::awaitable<void> relay_known_length(Up& up, beast::flat_buffer& ubuf, Client& client,
                                        std::string_view head, std::uint64_t length,
                                        request_state& st, const config::config& cfg) {
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
        st.error = is_timeout(wec) ? core::failure::client_timeout : core::failure::client_gone;
        st.detail = "writing response: " + wec.message();
        co_return;
      }
      ubuf.consume(n);
      left -= n;
      st.bytes_out += n;
    }
    if (left == 0) {
      co_return;
    }
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(left, body_read_size));
    lowest.expires_after(cfg.timeouts.upstream_response);
    auto [rec, rn] = co_await up.async_read_some(ubuf.prepare(want), nothrow);
    ubuf.commit(rn);
    if (rec) {
      st.error = is_timeout(rec) ? core::failure::upstream_timeout : core::failure::upstream_reset;
      st.detail = "reading response body: " +
                  (rec == net::error::eof ? std::string("end of stream before the whole body")
                                          : rec.message());
      co_return;
    }
  }
}

// Reads the backend's response header (relaying 1xx) and streams the response to the client.
template <class Up, class Client>
net::awaitable<void> relay_response(Up& up, beast::flat_buffer& ubuf, head_storage& fields,
                                    Client& client, body_buffer& chunk, request_state& st,
                                    const config::config& cfg) {
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
        st.error = core::failure::upstream_timeout;
        st.detail = "no response header within " +
                    std::to_string(cfg.timeouts.upstream_response.count()) + " ms";
      } else if (ec == bhttp::error::end_of_stream || ec == net::error::eof ||
                 ec == net::error::connection_reset || ec == net::error::broken_pipe ||
                 ec == bhttp::error::partial_message) {
        st.error = core::failure::upstream_reset;
        st.detail = "reading response header: " + ec.message();
        st.retryable = ec != bhttp::error::partial_message && before == 0 && !st.body_read_live;
      } else {
        st.error = core::failure::upstream_bad_response;
        st.detail = "reading response header: " + ec.message();
      }
      co_return;
    }
    auto status = rp->result_int();
    if (status >= 100 && status < 200) {
      if (status == 101) {
        if (!st.upgrade_requested) {
          st.error = core::failure::upstream_bad_response;
          st.detail = "101 Switching Protocols without an upgrade request";
          co_return;
        }
        co_await switch_protocols(client, *rp, st, cfg);
        co_return;
      }
      if (st.http11) {
        beast::get_lowest_layer(client).expires_after(cfg.timeouts.body_idle);
        if (auto wec = co_await relay_interim(client, *rp); wec) {
          st.error = core::failure::client_gone;
          co_return;
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
      st.error = core::failure::upstream_bad_response;
      st.detail = "response Transfer-Encoding other than chunked";
      co_return;
    }
  }

  std::string head;
  head.reserve(512);
  const auto framing = build_downstream_response(*rp, st, head);
  st.status = rp->result_int();
  reserve_for_body(ubuf, rp->content_length(), rp->is_done());
  if (framing == response_framing::length && !rp->is_done()) {
    // A body of known length is relayed as it comes: no parsing, no copy into the chunk.
    co_await relay_known_length(up, ubuf, client, head, *rp->content_length(), st, cfg);
    if (st.error == core::failure::none) {
      // Bytes past the body (a backend out of step) end the connection.
      st.upstream_reusable = st.request_sent && rp->keep_alive() && ubuf.size() == 0;
    }
    co_return;
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
        st.error = is_timeout(rec) ? core::failure::upstream_timeout
                   : (rec == bhttp::error::partial_message || rec == net::error::eof ||
                      rec == net::error::connection_reset)
                       ? core::failure::upstream_reset
                       : core::failure::upstream_bad_response;
        st.detail = "reading response body: " + rec.message();
        co_return;
      }
      got = chunk.size() - rp->body().size;
      done = rp->is_done();
      if (got == 0 && !done) {
        continue;
      }
    }
    beast::get_lowest_layer(client).expires_after(cfg.timeouts.body_idle);
    auto wec = co_await write_piece(client, head, chunk.data(), got,
                                    framing == response_framing::chunked, done);
    head.clear();  // sent with the first piece
    st.response_started = true;
    if (wec) {
      st.error = is_timeout(wec) ? core::failure::client_timeout : core::failure::client_gone;
      st.detail = "writing response: " + wec.message();
      co_return;
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
}

// One request/response exchange on a backend connection of either kind.
template <class Up, class Client>
net::awaitable<void> exchange(Up& up, upstream::connection& conn, Client& client,
                              beast::flat_buffer& cbuf, request_parser& parser,
                              std::string_view head, body_buffer& chunk, request_state& st,
                              const config::config& cfg, bool expect_continue) {
  co_await send_request(up, client, cbuf, parser, head, chunk, st, cfg, expect_continue);
  if (st.error != core::failure::none) {
    co_return;
  }
  co_await relay_response(up, conn.buffer, conn.head, client, chunk, st, cfg);
  if (st.tunnel && st.error == core::failure::none) {
    st.tunnels->add(1);
    auto down = std::make_unique<body_buffer>();
    auto stats = co_await wk::net::run_tunnel(client, cbuf, up, conn.buffer, chunk, *down,
                                              cfg.timeouts.tunnel_idle);
    st.bytes_in += stats.client_to_upstream;
    st.bytes_out += stats.upstream_to_client;
    st.tunnels->add(-1);
  }
}

observe::upstream_label label_of(const wk::runtime::snapshot& rt, const upstream::target* t) {
  if (t == &rt.origin) {
    return observe::upstream_label::origin;
  }
  if (t == &rt.cloudfront) {
    return observe::upstream_label::cloudfront;
  }
  return observe::upstream_label::acm;
}

// The domain label of validation metrics: a configured name or token domain, else "other" (a
// "*" allow-list must not turn every Host on the Internet into a time series).
std::string validation_label(const wk::runtime::snapshot& rt, std::string_view host) {
  const auto& domains = rt.cfg->validation.domains;
  if (std::find(domains.begin(), domains.end(), host) != domains.end() ||
      rt.tokens.has_tokens(host)) {
    return std::string(host);
  }
  return "other";
}

void write_access_log(worker_state* w, const request_state& st, const client_info& conn) {
  observe::access_record r;
  r.time = st.wall;
  r.client = conn.peer;
  r.host = st.decision.host;
  r.method = st.method;
  r.target = st.target;
  r.version = st.version;
  r.referer = st.referer;
  r.user_agent = st.user_agent;
  switch (st.decision.kind) {
  case routing::route_kind::origin:
    r.route = "origin";
    break;
  case routing::route_kind::validation:
    r.route = "validation";
    break;
  case routing::route_kind::reject:
    r.route = "reject";
    break;
  }
  r.upstream = st.upstream ? std::string_view(st.upstream->cfg.name) : std::string_view();
  r.status = st.status;
  r.bytes_in = st.bytes_in;
  r.bytes_out = st.bytes_out;
  r.duration_ms = std::chrono::duration<double, std::milli>(steady::now() - st.start).count();
  r.error = core::name_of(st.error);
  if (st.error != core::failure::none) {
    observe::process_counters().count_failure(static_cast<std::size_t>(st.error));
  }
  w->log.write(r);
  w->metrics.record_request(conn.listener_index,
                            static_cast<observe::route_label>(st.decision.kind), st.status,
                            steady::now() - st.start, st.bytes_in, st.bytes_out);
  if (st.validation_hit) {
    validation::event e;
    e.time = st.wall;
    e.client = conn.peer;
    e.user_agent = st.user_agent;
    e.domain = st.decision.host;
    e.file = st.decision.token;
    e.mode = validation::name_of(st.vmode);
    e.action = validation::name_of(st.vaction);
    e.status = st.status;
    if (st.upstream != nullptr) {
      e.upstream = st.vaction == validation::action_kind::fetch ? st.upstream->cfg.host
                                                                : st.upstream->cfg.name;
    }
    e.location = st.location;
    e.latency_ms = r.duration_ms;
    e.error = r.error;
    observe::validation_requests().add({{"domain", validation_label(*w->runtime, e.domain)},
                                        {"action", e.action},
                                        {"code", std::to_string(e.status)}});
    validation::events().record(std::move(e));
  }
}

// Answers a validation request locally (redirect, static file, 404): no backend involved.
// Returns whether the connection stays open.
template <class Client>
net::awaitable<bool> answer_validation(worker_state* w, Client& client, request_state& st,
                                       const client_info& conn, const validation::action& act,
                                       const config::config& cfg) {
  static const std::string not_found_body = "wkproxy: no such validation token\n";
  std::string_view location;
  std::string_view body;
  switch (act.kind) {
  case validation::action_kind::redirect:
    location = act.token->redirect_to;
    break;
  case validation::action_kind::serve:
    body = *act.body;
    break;
  default:
    body = not_found_body;
    break;
  }
  bool keep = st.client_keep_alive && st.http11 && !w->stopping;
  auto bytes = validation_reply(act.status, location, body, keep, st.head);
  if (bytes.empty()) {
    st.error = core::failure::internal;
    st.detail = "unsafe Location value";
    co_await send_error(client, st, cfg.timeouts);
    write_access_log(w, st, conn);
    co_return false;
  }
  beast::get_lowest_layer(client).expires_after(cfg.timeouts.body_idle);
  st.status = act.status;
  st.location = location;
  st.response_started = true;
  if (auto ec = co_await write_all(client, bytes); ec) {
    st.error = core::failure::client_gone;
    keep = false;
  } else {
    st.bytes_out = st.head ? 0 : body.size();
  }
  write_access_log(w, st, conn);
  co_return keep;
}

// Handles one request whose first bytes are in `cbuf`. Returns whether the connection stays
// open for another request.
template <class Client>
net::awaitable<bool> handle_request(worker_state* w, Client& client, beast::flat_buffer& cbuf,
                                    const client_info& conn, bool last) {
  auto rt = w->runtime;  // this request's snapshot, even if a reload happens meanwhile
  const auto& cfg = *rt->cfg;
  request_state st;
  st.decision.kind = routing::route_kind::reject;
  st.stopping = &w->stopping;
  st.tunnels = &w->metrics.tunnels;

  request_parser parser;
  parser.header_limit(static_cast<std::uint32_t>(cfg.limits.header_bytes));
  parser.body_limit(body_limit_for(cfg.limits));
  beast::get_lowest_layer(client).expires_after(cfg.timeouts.header_read);
  if (auto f = co_await read_request_head(client, cbuf, parser, cfg.limits, st.detail);
      f != core::failure::none) {
    st.error = f;
    if (st.error == core::failure::client_gone) {
      co_return false;  // no whole request arrived: no log line
    }
    co_await send_error(client, st, cfg.timeouts);
    write_access_log(w, st, conn);
    co_return false;
  }

  auto& req = parser.get();
  st.method = req.method_string();
  st.target = req.target();
  st.http11 = req.version() == 11;
  st.version = req.version();
  st.user_agent = req[bhttp::field::user_agent];
  st.referer = req[bhttp::field::referer];
  st.head = req.method() == bhttp::verb::head;
  st.client_keep_alive = req.keep_alive() && !w->stopping && !last;
  if (auto f = check_request(req, cfg.limits, st.detail); f != core::failure::none) {
    st.error = f;
    co_await send_error(client, st, cfg.timeouts);
    write_access_log(w, st, conn);
    co_return false;
  }

  auto facts = facts_of(req, !parser.is_done());
  st.decision = routing::route(rt->routes, facts);
  st.upgrade_requested =
      st.decision.kind == routing::route_kind::origin && st.http11 && wants_upgrade(req);
  if (st.decision.kind == routing::route_kind::reject) {
    st.error =
        st.decision.status == 405 ? core::failure::method_not_allowed : core::failure::bad_request;
    st.detail = st.decision.reason;
    co_await send_error(client, st, cfg.timeouts);
    write_access_log(w, st, conn);
    co_return false;
  }
  if (auto cl = parser.content_length();
      cl && cfg.limits.max_body_bytes != 0 && *cl > cfg.limits.max_body_bytes) {
    st.error = core::failure::body_too_large;
    st.detail = "limit is " + std::to_string(cfg.limits.max_body_bytes) + " bytes";
    co_await send_error(client, st, cfg.timeouts);
    write_access_log(w, st, conn);
    co_return false;
  }
  const upstream::target* fetch = nullptr;
  if (st.decision.kind == routing::route_kind::validation) {
    const auto act =
        validation::plan(rt->tokens, cfg.validation, st.decision.host, st.decision.token);
    st.validation_hit = true;
    st.vaction = act.kind;
    st.vmode = act.mode;
    switch (act.kind) {
    case validation::action_kind::forward:
      break;
    case validation::action_kind::origin:
      // Not one of this domain's tokens: the origin gets the request exactly as sent.
      st.decision.kind = routing::route_kind::origin;
      st.decision.upstream_target = std::move(st.decision.origin_target);
      break;
    case validation::action_kind::fetch:
      fetch = rt->fetch_target(*act.token);
      if (fetch == nullptr) {
        st.error = core::failure::internal;
        st.detail = "no fetch upstream for " + act.token->to_host;
        co_await send_error(client, st, cfg.timeouts);
        write_access_log(w, st, conn);
        co_return false;
      }
      st.decision.upstream_target = act.token->to_target;
      st.decision.authority = act.token->to_port == 443
                                  ? act.token->to_host
                                  : act.token->to_host + ":" + std::to_string(act.token->to_port);
      break;
    case validation::action_kind::redirect:
    case validation::action_kind::serve:
    case validation::action_kind::not_found:
      co_return co_await answer_validation(w, client, st, conn, act, cfg);
    }
  }
  if (st.decision.kind == routing::route_kind::validation) {
    st.upstream = fetch != nullptr ? fetch : &rt->cloudfront;
  } else {
    st.upstream = &rt->origin;
  }
  bool expect_continue =
      !parser.is_done() && beast::iequals(req[bhttp::field::expect], "100-continue");

  // Built before any body byte is parsed: Beast adds trailer fields to the parsed header, and
  // a trailer must never reach a backend as a header field.
  std::string out;
  out.reserve(512);
  build_upstream_request(parser, st, conn, cfg, out);

  auto chunk = w->take_buffer();
  if (!parser.is_done()) {
    if (auto f = prefetch_body(parser, cbuf, *chunk, st); f != core::failure::none) {
      st.error = f;
      w->give_buffer(std::move(chunk));
      co_await send_error(client, st, cfg.timeouts);
      write_access_log(w, st, conn);
      co_return false;
    }
  }
  std::unique_ptr<upstream::connection> up;
  const auto ulabel = label_of(*rt, st.upstream);
  // A backend that gets PROXY headers learns the client's address once per connection: such a
  // connection is only ever reused for the same client connection.
  std::string preface;
  std::string pool_key = st.upstream->key;
  switch (st.upstream->cfg.send_proxy_protocol) {
  case config::proxy_protocol::off:
    break;
  case config::proxy_protocol::v1:
    preface = wire::build_proxy_v1(conn.pp);
    pool_key += "|client=" + conn.peer;
    break;
  case config::proxy_protocol::v2:
    preface = wire::build_proxy_v2(conn.pp);
    pool_key += "|client=" + conn.peer;
    break;
  }
  // A pooled connection may have been closed by the backend just as we reused it: such a
  // failure before any response byte came back is retried on another connection (twice at
  // most), but only for an idempotent method without a body (RFC 9110 section 9.2.2). The
  // backend may have acted on a POST it read in full before closing; sending it again could
  // charge a card twice. Anything else gets its 502 instead.
  const bool may_retry =
      idempotent(req.method()) && !parser.chunked() && parser.content_length().value_or(0) == 0;
  for (int attempt = 0;; ++attempt) {
    up = attempt < 2 ? w->pool.take(pool_key) : nullptr;
    bool reused = up != nullptr;
    (reused ? w->metrics.pool_hits : w->metrics.pool_misses)[static_cast<std::size_t>(ulabel)]
        .add();
    if (!up) {
      auto outcome = co_await upstream::connect(*st.upstream, cfg.timeouts, preface);
      if (!outcome.conn) {
        st.error = outcome.error;
        st.detail = outcome.detail;
        count_upstream_failure(w, ulabel, st.error);
        break;
      }
      up = std::move(outcome.conn);
      up->key = pool_key;
    }
    ++up->uses;
    st.error = core::failure::none;
    st.retryable = false;
    if (auto* tls = std::get_if<upstream::tls_stream>(&up->stream)) {
      co_await exchange(*tls, *up, client, cbuf, parser, out, *chunk, st, cfg, expect_continue);
    } else {
      co_await exchange(std::get<upstream::tcp_stream>(up->stream), *up, client, cbuf, parser, out,
                        *chunk, st, cfg, expect_continue);
    }
    if (st.error != core::failure::none && st.retryable && may_retry && reused &&
        !st.response_started) {
      up.reset();
      continue;
    }
    break;
  }

  if (st.error == core::failure::none && st.upstream_reusable && up) {
    up->buffer.clear();
    if (up->buffer.capacity() > body_chunk_size) {
      up->buffer.shrink_to_fit();  // a pooled connection keeps no large buffer
    }
    if (up->head.bytes.capacity() > 4096) {
      up->head = {};  // nor the fields of an unusually large response header
    }
    w->pool.give(std::move(up));
  }
  if (st.error != core::failure::none) {
    if (up) {
      count_upstream_failure(w, ulabel, st.error);  // connect failures were counted above
    }
    co_await send_error(client, st, cfg.timeouts);
    st.client_keep_alive = false;
  }
  w->give_buffer(std::move(chunk));
  write_access_log(w, st, conn);
  co_return st.client_keep_alive && (parser.is_done() || st.request_body_done) && !w->stopping;
}

}  // namespace

void count_upstream_failure(worker_state* w, observe::upstream_label u, core::failure f) {
  using E = observe::upstream_error;
  E e{};
  switch (f) {
  case core::failure::upstream_unresolved:
    e = E::unresolved;
    break;
  case core::failure::upstream_refused:
    e = E::refused;
    break;
  case core::failure::upstream_connect_timeout:
    e = E::connect_timeout;
    break;
  case core::failure::upstream_tls:
    e = E::tls;
    break;
  case core::failure::upstream_reset:
    e = E::reset;
    break;
  case core::failure::upstream_bad_response:
    e = E::bad_response;
    break;
  case core::failure::upstream_timeout:
    e = E::timeout;
    break;
  default:
    return;
  }
  w->metrics.upstream_failures[static_cast<std::size_t>(u)][static_cast<std::size_t>(e)].add();
}

std::unique_ptr<body_buffer> worker_state::take_buffer() {
  if (free_buffers.empty()) {
    return std::make_unique<body_buffer>();
  }
  auto b = std::move(free_buffers.back());
  free_buffers.pop_back();
  return b;
}

void worker_state::give_buffer(std::unique_ptr<body_buffer> b) {
  // Keep as many as were ever busy at once, up to a bound (1,024 x 16 KiB = 16 MiB).
  if (free_buffers.size() < 1024) {
    free_buffers.push_back(std::move(b));
  }
}

namespace {

// Bytes of a request already waiting in the socket (MSG_PEEK: nothing is consumed).
bool input_pending(int fd) {
  char c;
  return ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

}  // namespace

void worker_state::add_session(session_handle* h) {
  h->prev = nullptr;
  h->next = sessions;
  if (sessions != nullptr) {
    sessions->prev = h;
  }
  sessions = h;
}

void worker_state::remove_session(session_handle* h) {
  if (h->prev != nullptr) {
    h->prev->next = h->next;
  } else {
    sessions = h->next;
  }
  if (h->next != nullptr) {
    h->next->prev = h->prev;
  }
  h->prev = h->next = nullptr;
}

namespace {

// Registers a session with its worker for graceful stop, for the session's life.
struct session_registration {
  worker_state* w;
  session_handle* handle;
  session_registration(worker_state* worker, session_handle* h) : w(worker), handle(h) {
    w->add_session(handle);
  }
  session_registration(const session_registration&) = delete;
  session_registration& operator=(const session_registration&) = delete;
  ~session_registration() { w->remove_session(handle); }
};

// A keep-alive connection waits this long, plus up to one deadline_tick, for its next request
// with a buffer and its coroutine frames before it parks. A connection kept busy by its client
// rarely waits at the moment of a tick; one that does pays a park and an unpark (a few system
// calls) and loses nothing.
constexpr auto park_linger = std::chrono::milliseconds(0);

enum class serve_end { closed, parked };

// Request after request on one client connection, plain or TLS, until either side ends it or,
// when `may_park`, the connection stays quiet for park_after between requests.
template <class Client>
net::awaitable<serve_end> serve_requests(worker_state* w, Client& client, session_handle& handle,
                                         const client_info& conn, std::string_view early,
                                         bool may_park) {
  auto& lowest = beast::get_lowest_layer(client);
  // Bounded: a request head, plus what one body read brings in (Beast reads at most 64 KiB).
  beast::flat_buffer cbuf(w->runtime->cfg->limits.header_bytes + 80 * 1024);
  if (!early.empty()) {
    const auto n = std::min(early.size(), cbuf.max_size());
    cbuf.commit(net::buffer_copy(cbuf.prepare(n), net::buffer(early.data(), n)));
  }

  std::size_t burst = 0;  // requests answered since the connection last waited for input
  for (;;) {
    if (cbuf.size() == 0) {
      // Stopping: a connection whose client is sending right now (or that comes back from
      // the parking lot with a request) is still served, with Connection: close.
      if (w->stopping && !input_pending(lowest.socket().native_handle())) {
        break;
      }
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
        if (rec == net::error::operation_aborted && lowest.park_requested() && !w->stopping) {
          co_return serve_end::parked;
        }
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
      observe::process_counters().count(observe::limit_event::requests_per_connection);
    } else if (++burst >= limits.max_pipelined) {
      last = true;
      observe::process_counters().count(observe::limit_event::pipelined);
    }
    const bool keep = co_await handle_request(w, client, cbuf, conn, last);
    ++handle.served;
    if (!keep || last) {
      break;
    }
  }
  co_return serve_end::closed;
}

// A plain-HTTP client connection: everything it keeps while parked.
struct http_connection {
  connection_count count;
  wk::net::timed_stream stream;
  client_info info;
  session_handle handle;
  session_registration registration;

  http_connection(connection_count c, tcp::socket s, client_info i)
      : count(std::move(c)), stream(std::move(s)), info(std::move(i)),
        registration(count.w, &handle) {
    handle.stream = &stream;
    handle.slot = info.slot;
  }

  // close() sends what is still queued, then the FIN (a shutdown first would add a system
  // call and change nothing).
  ~http_connection() { stream.close(); }
};

void park(std::unique_ptr<http_connection> c);

net::awaitable<void> serve_http(std::unique_ptr<http_connection> c, std::string early) {
  auto* w = c->count.w;
  if (co_await serve_requests(w, c->stream, c->handle, c->info, early, true) == serve_end::parked) {
    park(std::move(c));
  }
  // otherwise the connection closes here
}

}  // namespace

// A parked connection: what it needs to be served again, and nothing else (about 300 bytes;
// its socket is out of Asio's reactor, watched by the lot's own epoll set).
struct parked_connection {
  connection_count count;
  client_info info;
  int fd = -1;
  std::size_t served = 0;
  steady::time_point deadline;  // timeouts.idle from when it parked
  parked_connection* prev = nullptr;
  parked_connection* next = nullptr;

  parked_connection(connection_count c, client_info i, int descriptor, std::size_t n,
                    steady::time_point until)
      : count(std::move(c)), info(std::move(i)), fd(descriptor), served(n), deadline(until) {}
  parked_connection(const parked_connection&) = delete;
  parked_connection& operator=(const parked_connection&) = delete;
  ~parked_connection() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
};

// The worker's parked connections: an epoll set of their descriptors, itself watched by the
// worker's io_context, and an idle deadline sweep. A descriptor that becomes readable (a
// request, or the client closing) goes back to Asio and a new coroutine serves it.
class parking_lot {
public:
  explicit parking_lot(const net::any_io_executor& ex) : ex_(ex), epoll_(ex), timer_(ex) {
    const int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) {
      throw boost::system::system_error(errno, boost::system::system_category(), "epoll_create1");
    }
    epoll_.assign(fd);
  }
  parking_lot(const parking_lot&) = delete;
  parking_lot& operator=(const parking_lot&) = delete;
  ~parking_lot() {
    while (head_ != nullptr) {
      delete take(head_);
    }
  }

  // Takes `p` in; false when its descriptor cannot be watched (the caller's `p` then closes).
  bool park(std::unique_ptr<parked_connection>& p) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = p.get();
    if (::epoll_ctl(epoll_.native_handle(), EPOLL_CTL_ADD, p->fd, &ev) != 0) {
      return false;
    }
    auto* raw = p.release();
    raw->prev = tail_;
    raw->next = nullptr;
    (tail_ != nullptr ? tail_->next : head_) = raw;
    tail_ = raw;
    ++count_;
    watch();
    tick();
    return true;
  }

  // Closes the oldest parked connection `pred` selects; false when none does.
  template <class Pred> bool close_first(Pred pred) {
    for (auto* p = head_; p != nullptr; p = p->next) {
      if (pred(*p)) {
        delete take(p);
        return true;
      }
    }
    return false;
  }

  // Closes the parked connections `pred` selects.
  template <class Pred> void close_if(Pred pred) {
    for (auto* p = head_; p != nullptr;) {
      auto* next = p->next;
      if (pred(*p)) {
        delete take(p);
      }
      p = next;
    }
  }

  std::size_t size() const { return count_; }

private:
  // Unlinks `p` and removes its descriptor from the set; the caller owns it.
  parked_connection* take(parked_connection* p) {
    (p->prev != nullptr ? p->prev->next : head_) = p->next;
    (p->next != nullptr ? p->next->prev : tail_) = p->prev;
    p->prev = p->next = nullptr;
    --count_;
    ::epoll_ctl(epoll_.native_handle(), EPOLL_CTL_DEL, p->fd, nullptr);
    return p;
  }

  void watch() {
    if (watching_) {
      return;
    }
    watching_ = true;
    epoll_.async_wait(net::posix::stream_descriptor::wait_read,
                      [this](const boost::system::error_code& ec) {
                        if (ec == net::error::operation_aborted) {
                          return;  // the lot is being destroyed
                        }
                        watching_ = false;
                        ready();
                      });
  }

  void ready() {
    std::array<epoll_event, 64> events;
    for (;;) {
      const int n =
          ::epoll_wait(epoll_.native_handle(), events.data(), static_cast<int>(events.size()), 0);
      if (n <= 0) {
        break;
      }
      for (int i = 0; i < n; ++i) {
        unpark(std::unique_ptr<parked_connection>(
            take(static_cast<parked_connection*>(events[static_cast<std::size_t>(i)].data.ptr))));
      }
      if (n < static_cast<int>(events.size())) {
        break;
      }
    }
    if (head_ != nullptr) {
      watch();
    }
  }

  // Back to Asio, served by a new coroutine (which reads the request, or finds the close).
  void unpark(std::unique_ptr<parked_connection> p) {
    tcp::socket socket(ex_);
    boost::system::error_code ec;
    socket.assign(p->info.socket_v6 ? tcp::v6() : tcp::v4(), p->fd, ec);
    if (ec) {
      return;  // p closes its descriptor
    }
    p->fd = -1;
    auto c = std::make_unique<http_connection>(std::move(p->count), std::move(socket),
                                               std::move(p->info));
    c->handle.served = p->served;
    net::co_spawn(ex_, serve_http(std::move(c), {}), observe::log_exception{"session"});
  }

  // Closes connections parked past their idle deadline, every deadline_tick while any is.
  void tick() {
    if (ticking_) {
      return;
    }
    ticking_ = true;
    timer_.expires_after(wk::net::deadline_tick);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec == net::error::operation_aborted) {
        return;
      }
      ticking_ = false;
      const auto now = steady::now();
      close_if([&](const parked_connection& p) { return p.deadline <= now; });
      if (head_ != nullptr) {
        tick();
      }
    });
  }

  net::any_io_executor ex_;
  net::posix::stream_descriptor epoll_;
  net::steady_timer timer_;
  parked_connection* head_ = nullptr;
  parked_connection* tail_ = nullptr;
  std::size_t count_ = 0;
  bool watching_ = false;
  bool ticking_ = false;
};

worker_state::worker_state() = default;
worker_state::~worker_state() = default;

std::size_t worker_state::parked_count() const {
  return lot ? lot->size() : 0;
}

// Cancelling completes the session's wait later (never inline): the list stays as it is while
// it is walked.
void worker_state::begin_stop() {
  stopping = true;
  for (auto* h = sessions; h != nullptr; h = h->next) {
    if (h->idle && h->stream && h->served > 0 &&
        !input_pending(h->stream->socket().native_handle())) {
      h->stream->cancel();
    }
  }
  if (lot) {
    lot->close_if([](const parked_connection& p) { return p.served > 0 && !input_pending(p.fd); });
  }
}

void worker_state::close_idle() {
  for (auto* h = sessions; h != nullptr; h = h->next) {
    if (h->idle && h->stream) {
      h->stream->cancel();
    }
  }
  if (lot) {
    lot->close_if([](const parked_connection&) { return true; });
  }
}

bool worker_state::make_room(const wk::net::listener_slot* slot) {
  if (lot && lot->close_first([slot](const parked_connection& p) {
        return p.served > 0 && p.count.slot.get() == slot;
      })) {
    return true;
  }
  // Not parked yet (or TLS, which never parks): the list is newest first, so the last match is
  // the oldest. Cancelling completes its wait later; the connection then closes and gives its
  // slot back.
  session_handle* oldest = nullptr;
  for (auto* h = sessions; h != nullptr; h = h->next) {
    if (h->idle && h->stream && h->served > 0 && h->slot == slot) {
      oldest = h;
    }
  }
  if (oldest == nullptr) {
    return false;
  }
  oldest->stream->cancel();
  oldest->idle = false;  // chosen once
  return true;
}

namespace {

// Takes a quiet connection out of Asio's reactor and into the worker's parking lot: what stays
// is a parked_connection and a kernel epoll entry, no buffer, socket object or coroutine.
void park(std::unique_ptr<http_connection> c) {
  auto* w = c->count.w;
  if (!w->lot) {
    w->lot = std::make_unique<parking_lot>(c->stream.get_executor());
  }
  boost::system::error_code ec;
  const int fd = c->stream.socket().release(ec);
  if (ec) {
    return;  // c closes the connection
  }
  // The deadline it was waiting with: timeouts.idle since its last answer, or header_read
  // since it was accepted when it has not sent a request yet.
  const auto deadline = c->stream.expiry();
  auto p = std::make_unique<parked_connection>(std::move(c->count), std::move(c->info), fd,
                                               c->handle.served, deadline);
  c.reset();  // the socket object, the registration and the stream go now
  if (!w->lot->park(p)) {
    observe::warn_limited("cannot park a keep-alive connection: " +
                          std::string(std::strerror(errno)));
  }
}

}  // namespace

void serve_connection(connection_count count, tcp::socket socket, client_info info,
                      std::string early) {
  auto c = std::make_unique<http_connection>(std::move(count), std::move(socket), std::move(info));
  auto ex = c->stream.get_executor();
  net::co_spawn(ex, serve_http(std::move(c), std::move(early)), observe::log_exception{"session"});
}

net::awaitable<void> serve_tls_connection(worker_state* w, tcp::socket socket, client_info info,
                                          std::string early,
                                          std::shared_ptr<const wk::net::server_tls> tls) {
  using tls_stream = beast::ssl_stream<wk::net::timed_stream>;
  tls_stream client(wk::net::timed_stream(std::move(socket)), tls->context());
  auto& lowest = beast::get_lowest_layer(client);
  lowest.expires_after(w->runtime->cfg->timeouts.header_read);
  auto [hec, used] = co_await client.async_handshake(
      net::ssl::stream_base::server, net::buffer(early.data(), early.size()), nothrow);
  if (hec) {
    // A connection that closes before sending anything is a TCP health check, not a failure.
    if (!(early.empty() && (hec == net::error::eof || hec == net::ssl::error::stream_truncated))) {
      observe::process_counters().count(observe::connection_event::tls_handshake_failed);
      observe::warn_limited("TLS handshake with " + info.peer + " failed: " +
                            (is_timeout(hec) ? std::string("timed out") : hec.message()));
    }
    lowest.close();
    co_return;
  }
  if (const char* name = SSL_get_servername(client.native_handle(), TLSEXT_NAMETYPE_host_name)) {
    info.sni = name;
  }
  info.tls = true;
  session_handle handle;
  handle.stream = &lowest;
  handle.slot = info.slot;
  {
    session_registration registration(w, &handle);
    co_await serve_requests(w, client, handle, info, {}, false);
  }
  if (lowest.socket().is_open()) {
    // close_notify, so that a close-delimited body cannot be mistaken for a truncated one; the
    // peer's answer is awaited briefly.
    lowest.expires_after(std::chrono::seconds(1));
    co_await client.async_shutdown(nothrow);
  }
  lowest.close();
}

}  // namespace wk::http
