// Component tests of the session's phases over boost::beast::test::stream: a scripted client
// on one side, a scripted backend on the other, the real read/prepare/exchange/finish code in
// between (only the pool/connect step is replaced by the scripted backend). Fragmentation
// (read_size(1)) and a fail_count loop run every I/O failure path of the exchange once.

#include "config/load.hpp"
#include "runtime/runtime.hpp"
#include "session/handle_request.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/fail_count.hpp>
#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/core/buffers_prefix.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <doctest/doctest.h>

#include <exception>
#include <functional>
#include <optional>
#include <string>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace session = wk::session;

namespace {

// A test stream with the deadline calls the session makes on a timed_stream (no deadlines
// here: a test stream never stalls).
struct test_stream : beast::test::stream {
  using beast::test::stream::stream;
  template <class D> void expires_after(D) {}
  template <class D> void answer_after(D) {}
  void expires_never() {}

  // What the tunnel asks of a socket after a 101 (not reached by these tests' exchanges).
  struct socket_view {
    test_stream* s;
    void shutdown(asio::socket_base::shutdown_type, boost::system::error_code&) {
      s->close_remote();
    }
    void close(boost::system::error_code&) { s->close(); }
  };
  socket_view socket() { return {this}; }
};

// A backend connection that takes only `accept_bytes` more bytes, then fails every write with
// broken_pipe, as a socket does after the backend answered early and closed.
struct fragile_stream : test_stream {
  using test_stream::test_stream;
  std::size_t accept_bytes = std::size_t(-1);

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    const auto n = std::min(accept_bytes, beast::buffer_bytes(buffers));
    if (n == 0 && beast::buffer_bytes(buffers) > 0) {
      return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
          [this](auto handler) {
            asio::post(get_executor(), [h = std::move(handler)]() mutable {
              h(asio::error::broken_pipe, std::size_t(0));
            });
          },
          token);
    }
    if (accept_bytes != std::size_t(-1)) {
      accept_bytes -= n;
    }
    return test_stream::async_write_some(beast::buffers_prefix(n, buffers),
                                         std::forward<Token>(token));
  }
};

std::shared_ptr<const wk::runtime::snapshot> make_runtime(wk::upstream::resolver_registry& dns) {
  const auto loaded = wk::config::load_string(
      R"(version: 1
listen: ["127.0.0.1:8080"]
origin: http://127.0.0.1:8081
cloudfront: http://127.0.0.1:8082
domains: [example.com]
)",
      "test.yaml", [](std::string_view) { return std::optional<std::string>(); });
  REQUIRE(loaded.errors.empty());
  std::vector<std::string> warnings;
  auto built = wk::runtime::build_runtime(*loaded.cfg, dns, warnings);
  REQUIRE(std::holds_alternative<std::shared_ptr<const wk::runtime::snapshot>>(built));
  return std::get<std::shared_ptr<const wk::runtime::snapshot>>(built);
}

// One worker's context with its own counters and stores, and one client connection whose
// requests go to a scripted backend.
struct bench {
  wk::upstream::resolver_registry dns;
  wk::observe::counters counters;
  wk::validation::event_store events;
  session::context w;
  session::client_info conn;
  asio::io_context ioc;
  beast::test::fail_count fc;
  test_stream client;       // the proxy's side of the client connection
  test_stream client_peer;  // the client
  fragile_stream up;        // the proxy's side of the backend connection
  test_stream up_peer;      // the backend
  beast::flat_buffer cbuf{64 * 1024};
  beast::flat_buffer ubuf;
  wk::http::head_storage fields;
  std::optional<bool> keep;  // set when handle_request completed
  session::fault upstream_fault;
  std::function<void()> before_exchange = [] {};
  std::function<void()> after_exchange = [] {};

  explicit bench(std::size_t fail_after = std::size_t(-1))
      : fc(fail_after), client(ioc, fc), client_peer(ioc), up(ioc, fc), up_peer(ioc) {
    w.runtime = make_runtime(dns);
    w.report.counters = &counters;
    w.report.events = &events;
    conn.peer = "192.0.2.7:4711";
    conn.peer_ip = "192.0.2.7";
    client.connect(client_peer);
    up.connect(up_peer);
  }

  // Serves one request: `request` from the client, `response` from the backend (which closes
  // after it when `backend_closes`).
  void run(std::string_view request, std::string_view response, bool backend_closes = false) {
    client.append(request);
    up.append(response);
    if (backend_closes) {
      up_peer.close();
    }
    auto to_upstream = [this](const wk::runtime::snapshot& rt, session::request_parser& parser,
                              const session::prepared& req, session::body_buffer& chunk,
                              session::request_state& st) -> asio::awaitable<session::fault> {
      before_exchange();
      auto f = co_await session::exchange(up, ubuf, fields, client, cbuf, parser, req.head, chunk,
                                          st, *rt.cfg, req.expect_continue);
      after_exchange();
      upstream_fault = f;
      co_return f;
    };
    asio::co_spawn(ioc, session::handle_request(w, client, cbuf, conn, false, to_upstream),
                   [this](std::exception_ptr e, bool k) {
                     REQUIRE_FALSE(e);
                     keep = k;
                   });
    ioc.run();
  }

  std::string to_backend() { return std::string(up_peer.str()); }
  std::string to_client() { return std::string(client_peer.str()); }
  std::uint64_t failures(wk::core::failure f) const {
    return counters.failures[static_cast<std::size_t>(f)].load();
  }
  std::uint64_t origin_requests(std::size_t code_class) const {
    return w.metrics
        .requests[0][static_cast<std::size_t>(wk::observe::route_label::origin)][code_class]
        .get();
  }
};

// The body of a whole HTTP request as a backend would read it (chunks decoded).
std::string request_body(const std::string& wire) {
  boost::beast::http::request_parser<boost::beast::http::string_body> p;
  p.eager(true);
  boost::system::error_code ec;
  p.put(asio::buffer(wire), ec);
  REQUIRE_FALSE(ec);
  REQUIRE(p.is_done());
  return p.get().body();
}

constexpr std::string_view get_request = "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
constexpr std::string_view ok_response =
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Backend: yes\r\n\r\nhello";

}  // namespace

TEST_CASE("a GET is relayed end to end and the connection stays open") {
  bench b;
  b.run(get_request, ok_response);
  REQUIRE(b.keep.has_value());
  CHECK(*b.keep);
  const auto sent = b.to_backend();
  CHECK(sent.starts_with("GET /a?b=1 HTTP/1.1\r\n"));
  CHECK(sent.find("Host: example.com\r\n") != std::string::npos);
  CHECK(sent.find("X-Forwarded-For: 192.0.2.7\r\n") != std::string::npos);
  CHECK(sent.ends_with("\r\n\r\n"));
  const auto got = b.to_client();
  CHECK(got.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(got.find("X-Backend: yes\r\n") != std::string::npos);
  CHECK(got.find("Content-Length: 5\r\n") != std::string::npos);
  CHECK(got.ends_with("\r\n\r\nhello"));
  CHECK(b.origin_requests(2) == 1);  // 2xx
  CHECK(b.failures(wk::core::failure::upstream_reset) == 0);
}

TEST_CASE("a graceful stop that begins after the answer's head keeps the connection open") {
  // The client was told the connection stays open and may be sending its next request right
  // now: closing it would lose that request. Its next request is answered with close instead.
  bench b;
  b.after_exchange = [&b] { b.w.stopping = true; };
  b.run(get_request, ok_response);
  REQUIRE(b.keep.has_value());
  CHECK(*b.keep);
  const auto got = b.to_client();
  CHECK(got.find("Connection: close") == std::string::npos);
  CHECK(got.ends_with("\r\n\r\nhello"));
}

TEST_CASE("a graceful stop that begins while a request is in flight answers it with close") {
  bench b;
  b.before_exchange = [&b] { b.w.stopping = true; };
  b.run(get_request, ok_response);
  REQUIRE(b.keep.has_value());
  CHECK_FALSE(*b.keep);
  const auto got = b.to_client();
  CHECK(got.find("\r\nConnection: close\r\n") != std::string::npos);
  CHECK(got.ends_with("\r\n\r\nhello"));
}

TEST_CASE("a chunked response is relayed chunked") {
  bench b;
  b.run(get_request,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  REQUIRE(b.keep.has_value());
  CHECK(*b.keep);
  const auto got = b.to_client();
  CHECK(got.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
  const auto body = got.substr(got.find("\r\n\r\n") + 4);
  // Re-framed piece by piece: the same bytes, whatever the chunk boundaries.
  CHECK(body.ends_with("0\r\n\r\n"));
  CHECK(body.find("abc") != std::string::npos);
  CHECK(body.find("de") != std::string::npos);
}

TEST_CASE("an interim 1xx response is relayed before the final one") {
  bench b;
  b.run(get_request, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  REQUIRE(b.keep.has_value());
  CHECK(*b.keep);
  const auto got = b.to_client();
  CHECK(got.starts_with("HTTP/1.1 103 Early Hints\r\n"));
  CHECK(got.find("Link: </s.css>; rel=preload\r\n") != std::string::npos);
  CHECK(got.find("\r\n\r\nHTTP/1.1 200 OK\r\n") != std::string::npos);
  CHECK(got.ends_with("\r\n\r\nok"));
}

TEST_CASE("a request body of known length and a chunked one are uploaded") {
  SUBCASE("Content-Length") {
    bench b;
    b.run("POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\nhello world",
          "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    REQUIRE(b.keep.has_value());
    CHECK(*b.keep);
    const auto sent = b.to_backend();
    CHECK(sent.find("Content-Length: 11\r\n") != std::string::npos);
    CHECK(sent.ends_with("\r\n\r\nhello world"));
    CHECK(b.to_client().starts_with("HTTP/1.1 201 Created\r\n"));
  }
  SUBCASE("chunked") {
    bench b;
    b.run("POST /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
          "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    REQUIRE(b.keep.has_value());
    CHECK(*b.keep);
    const auto sent = b.to_backend();
    CHECK(sent.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
    CHECK(request_body(sent) == "hello world");
    CHECK(b.to_client().ends_with("\r\n\r\nok"));
  }
}

TEST_CASE("trailer fields are relayed when safe, in both directions") {
  SUBCASE("a chunked request's trailers reach the origin, minus unsafe ones") {
    bench b;
    b.run("POST /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
          "X-Tag: head\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: abc\r\nHost: evil.example\r\n"
          "X-Forwarded-For: 203.0.113.9\r\nX-Tag: trailer\r\n\r\n",
          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    REQUIRE(b.keep.has_value());
    CHECK(*b.keep);
    const auto sent = b.to_backend();
    CAPTURE(sent);
    CHECK(request_body(sent) == "hello");
    const auto head_end = sent.find("\r\n\r\n");
    const auto head = sent.substr(0, head_end + 2);
    const auto tail = sent.substr(sent.rfind("\r\n0\r\n"));
    // The header is the client's header: no trailer field joined it.
    CHECK(head.find("X-Tag: head\r\n") != std::string::npos);
    CHECK(head.find("X-Tag: trailer") == std::string::npos);
    CHECK(head.find("X-Checksum") == std::string::npos);
    CHECK(head.find("evil") == std::string::npos);
    // The trailer section: the safe fields in the order sent, a same-named one included; never
    // Host or ours.
    CHECK(tail == "\r\n0\r\nX-Checksum: abc\r\nX-Tag: trailer\r\n\r\n");
  }
  SUBCASE("a chunked response's trailers reach an HTTP/1.1 client, minus unsafe ones") {
    bench b;
    b.run(get_request, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                       "0\r\nServer-Timing: db;dur=53\r\nSet-Cookie: a=1\r\n\r\n");
    REQUIRE(b.keep.has_value());
    CHECK(*b.keep);
    const auto got = b.to_client();
    CAPTURE(got);
    CHECK(got.ends_with("\r\n0\r\nServer-Timing: db;dur=53\r\n\r\n"));
    CHECK(got.find("Set-Cookie") == std::string::npos);
    CHECK(got.find("Trailer:") == std::string::npos);
  }
  SUBCASE("an HTTP/1.0 client gets the body delimited by the close, without trailers") {
    bench b;
    b.run("GET /a HTTP/1.0\r\nHost: example.com\r\n\r\n",
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
          "0\r\nServer-Timing: db;dur=53\r\n\r\n");
    REQUIRE(b.keep.has_value());
    const auto got = b.to_client();
    CHECK(got.ends_with("\r\n\r\nabc"));
    CHECK(got.find("Server-Timing") == std::string::npos);
  }
}

TEST_CASE("an early answer is relayed, not a 502; the rest of the body is drained or the "
          "connection closed") {
  constexpr std::string_view early = "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n"
                                     "Connection: close\r\n\r\nnope";
  // The length of the head the backend gets for `request` (the body follows it).
  auto head_length = [](std::string_view request) {
    bench b;
    b.run(request, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    return b.to_backend().find("\r\n\r\n") + 4;
  };
  SUBCASE("a short body: drained, the connection stays open") {
    const std::string request =
        "POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\nhello world";
    bench b;
    b.up.accept_bytes = head_length(request) + 3;  // the head and 3 body bytes, then closed
    b.run(request, early, true);
    REQUIRE(b.keep.has_value());
    CHECK(*b.keep);
    const auto got = b.to_client();
    CHECK(got.starts_with("HTTP/1.1 413 Payload Too Large\r\n"));
    CHECK(got.ends_with("\r\n\r\nnope"));
    CHECK(got.find("Connection: close") == std::string::npos);
    CHECK(b.upstream_fault.error == wk::core::failure::none);
    CHECK(b.failures(wk::core::failure::upstream_reset) == 0);
    CHECK(b.cbuf.size() == 0);  // the whole request was read: the next one starts clean
  }
  SUBCASE("a chunked body still coming: drained through the parser") {
    std::string body_rest;
    for (int i = 0; i < 20; ++i) {
      body_rest += "400\r\n" + std::string(1024, 'x') + "\r\n";
    }
    body_rest += "0\r\n\r\n";
    const std::string request = "POST /up HTTP/1.1\r\nHost: example.com\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n" +
                                body_rest;
    bench b;
    b.client.read_size(4096);  // the body arrives over many reads
    b.up.accept_bytes = head_length(request) + 10;
    b.run(request, early, true);
    REQUIRE(b.keep.has_value());
    CHECK(*b.keep);
    CHECK(b.to_client().starts_with("HTTP/1.1 413 "));
    CHECK(b.cbuf.size() == 0);
  }
  SUBCASE("a body longer than the drain limit: Connection: close, then the close") {
    const std::string body(2 * 1024 * 1024, 'b');
    const std::string request =
        "POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\n\r\n" + body;
    bench b;
    b.up.accept_bytes = 3000;
    b.run(request, early, true);
    REQUIRE(b.keep.has_value());
    CHECK_FALSE(*b.keep);
    const auto got = b.to_client();
    CHECK(got.starts_with("HTTP/1.1 413 "));
    CHECK(got.find("Connection: close\r\n") != std::string::npos);
    CHECK(got.ends_with("\r\n\r\nnope"));
    CHECK(b.failures(wk::core::failure::upstream_reset) == 0);
  }
  SUBCASE("no answer before the close: still a 502") {
    const std::string request =
        "POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\nhello world";
    bench b;
    b.up.accept_bytes = head_length(request) + 3;
    b.run(request, "", true);
    REQUIRE(b.keep.has_value());
    CHECK_FALSE(*b.keep);
    CHECK(b.to_client().starts_with("HTTP/1.1 502 "));
    CHECK(b.upstream_fault.error == wk::core::failure::upstream_reset);
  }
  SUBCASE("a failure sending the head is not an early answer") {
    const std::string request =
        "POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\nhello world";
    bench b;
    b.up.accept_bytes = 10;
    b.run(request, early, true);
    REQUIRE(b.keep.has_value());
    CHECK_FALSE(*b.keep);
    CHECK(b.to_client().starts_with("HTTP/1.1 502 "));
  }
}

TEST_CASE("a backend that dies mid-response gets a 502, or a cut body, and no keep-alive") {
  SUBCASE("in the header: 502") {
    bench b;
    b.run(get_request, "HTTP/1.1 200 OK\r\nContent-Le", true);
    REQUIRE(b.keep.has_value());
    CHECK_FALSE(*b.keep);
    const auto got = b.to_client();
    CHECK(got.starts_with("HTTP/1.1 502 "));
    CHECK(got.find("Connection: close\r\n") != std::string::npos);
    CHECK(b.upstream_fault.error == wk::core::failure::upstream_reset);
    CHECK(b.failures(wk::core::failure::upstream_reset) == 1);
    CHECK(b.w.metrics
              .upstream_failures[static_cast<std::size_t>(wk::observe::upstream_label::origin)]
                                [static_cast<std::size_t>(wk::observe::upstream_error::reset)]
              .get() == 1);
    CHECK(b.origin_requests(5) == 1);  // 5xx
  }
  SUBCASE("in the body: the head went out, the body is cut short") {
    bench b;
    b.run(get_request, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello", true);
    REQUIRE(b.keep.has_value());
    CHECK_FALSE(*b.keep);
    const auto got = b.to_client();
    CHECK(got.starts_with("HTTP/1.1 200 OK\r\n"));
    CHECK(got.ends_with("\r\n\r\nhello"));
    CHECK(b.upstream_fault.error == wk::core::failure::upstream_reset);
    CHECK(b.failures(wk::core::failure::upstream_reset) == 1);
  }
}

TEST_CASE("a backend status code below 100 is a 502, not relayed") {
  // Found by fuzz_session: Beast reads "000", which went out as "HTTP/1.1 0 OK".
  bench b;
  b.run(get_request, "HTTP/1.1 000 OK\r\nContent-Length: 2\r\n\r\nok");
  REQUIRE(b.keep.has_value());
  CHECK_FALSE(*b.keep);
  CHECK(b.to_client().starts_with("HTTP/1.1 502 "));
  CHECK(b.upstream_fault.error == wk::core::failure::upstream_bad_response);
}

TEST_CASE("an empty chunked body arriving a byte at a time is relayed") {
  // Found by fuzz_session: "0\r\n" then one more byte tripped an assertion in Boost 1.81's
  // chunk parser (debug builds).
  bench b;
  b.client.read_size(1);
  b.up.read_size(1);
  b.run("POST /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n\r\n");
  REQUIRE(b.keep.has_value());
  CHECK(*b.keep);
  CHECK(request_body(b.to_backend()).empty());
  CHECK(b.to_client().ends_with("\r\n\r\n0\r\nX-T: 1\r\n\r\n"));  // the safe trailer passes
}

TEST_CASE("one byte per read on both sides gives the same bytes") {
  bench whole;
  whole.run("POST /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nhello\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nworld");
  bench bytes;
  bytes.client.read_size(1);
  bytes.up.read_size(1);
  bytes.run("POST /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nhello\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nworld");
  REQUIRE(whole.keep.has_value());
  REQUIRE(bytes.keep.has_value());
  CHECK(*bytes.keep == *whole.keep);
  CHECK(bytes.to_client() == whole.to_client());
  // The chunk boundaries of a re-framed body may differ; the decoded bytes may not.
  CHECK(request_body(bytes.to_backend()) == "hello");
  CHECK(request_body(whole.to_backend()) == "hello");
  CHECK(bytes.to_client().ends_with("\r\n\r\nworld"));
}

TEST_CASE("every I/O failure of the exchange ends the request in a defined outcome") {
  // fail_count fails the n-th operation on the client or backend stream, and every one after.
  // Each n ends the request (handle_request completes) without keeping the connection, until
  // n is past the last operation and the exchange succeeds.
  constexpr std::string_view request =
      "POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello";
  constexpr std::string_view response =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
  bool succeeded = false;
  std::size_t n = 0;
  for (; n < 64 && !succeeded; ++n) {
    CAPTURE(n);
    bench b(n);
    b.client.read_size(7);
    b.up.read_size(7);
    b.run(request, response);
    REQUIRE(b.keep.has_value());
    if (*b.keep) {
      succeeded = true;
      CHECK(b.to_client().ends_with("0\r\n\r\n"));
      continue;
    }
    // Failed somewhere: counted once as the failure it was, with at most one reply.
    std::uint64_t counted = 0;
    for (const auto& c : b.counters.failures) {
      counted += c.load();
    }
    CHECK(counted <= 1);
    const auto got = b.to_client();
    CHECK(got.find("HTTP/1.1", 1) == std::string::npos);
  }
  CHECK(succeeded);
  CHECK(n > 10);  // many failure points were run before the exchange got through
}
