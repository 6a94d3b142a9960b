// A whole client connection through the session: the real keep-alive loop (serve_requests),
// request after request through handle_request (read, prepare, local answers, prefetch,
// exchange, finish), over in-memory streams (beast::test::stream). Only the pool and connect
// step is replaced: each request that reaches a backend gets a new scripted backend connection
// that answers with fuzzed bytes and then ends its stream.
//
// Input: two parameter bytes, then the client's bytes, then one answer per backend connection,
// separated by "\n#~#\n" (a backend connection past the last answer gets an empty one):
//   byte 0, bits 0-2: the client stream's read size (see read_sizes), bits 3-5: the backends'
//   byte 1, bit 0: the second configuration (small limits, few requests per connection)
// Both peers end their streams after their bytes (the client half-closes: it still reads), so
// the connection must end; a hang is a finding (libFuzzer's -timeout).
//
// Invariants, beyond the sanitizers:
// - the session completes, without an exception;
// - what the client receives is a sequence of HTTP/1.1 responses (Beast's parser): nothing
//   else, the last one alone may be cut short, nothing follows a response that closes the
//   connection, nothing is parsed after a 101 (tunnel bytes);
// - no more final responses than requests the client sent (a trailing unparsable or partial
//   request counts as one);
// - each backend connection receives one request: an HTTP/1.1 head with one Host, not both
//   chunked and Content-Length, nothing after it but tunnel bytes after a 101; on the
//   validation route no Cookie or Authorization;
// - a request that reaches a backend whole was sent whole by the client, with the same method
//   and the same body (chunks decoded);
// - a backend answer the session relayed without a fault reaches the client with the same
//   status and body (not for HEAD, 1xx-only or tunnel).

#include "config/load.hpp"
#include "fuzz_check.hpp"
#include "runtime/runtime.hpp"
#include "session/handle_request.hpp"
#include "session/serve_requests.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/dynamic_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using namespace wk;  // NOLINT: a fuzz entry point, not library code

namespace {

// A test stream with what the session asks of a timed_stream (no deadlines: an in-memory
// stream never stalls; no parking).
struct test_stream : beast::test::stream {
  using beast::test::stream::stream;
  template <class D> void expires_after(D) {}
  template <class D> void answer_after(D) {}
  template <class D> void park_after(D) {}
  void expires_never() {}
  void park_never() {}
  bool park_requested() const { return false; }

  // What the tunnel and the stopping check ask of a socket. The scripted peers never read, so
  // shutting down the sending side changes nothing they see.
  struct socket_view {
    test_stream* s;
    void shutdown(asio::socket_base::shutdown_type, boost::system::error_code& ec) { ec = {}; }
    void close(boost::system::error_code& ec) {
      s->close();
      ec = {};
    }
    int native_handle() const { return -1; }
  };
  socket_view socket() { return {this}; }
};

constexpr std::array<std::size_t, 8> read_sizes = {0, 1, 2, 3, 7, 64, 512, 4096};  // 0: any

const char* const config_text[2] = {
    // Both routes, a redirect token and a static (inline) token, a wildcard domain.
    R"(version: 1
listen: ["127.0.0.1:8080"]
origin: http://127.0.0.1:8081
cloudfront: http://127.0.0.1:8082
domains: [example.com, www.example.com, "*.example.org"]
validation:
  mode: forward
  modes:
    www.example.com: redirect
    "*.example.org": static
  unknown_token: origin
  event_log: off
tokens:
  - domain: www.example.com
    redirect_from: http://www.example.com/.well-known/pki-validation/0123abcd.txt
    redirect_to: https://validation.example.net/1/.well-known/pki-validation/0123abcd.txt
  - domain: a.example.org
    redirect_from: http://a.example.org/.well-known/pki-validation/4567ef.txt
    redirect_to: https://validation.example.net/2/.well-known/pki-validation/4567ef.txt
    content: "token-4567ef"
access_log: off
)",
    // Small limits: 413, 414, 431, the last request of a connection, a pipelining cap.
    R"(version: 1
listen: ["127.0.0.1:8080"]
origin: http://127.0.0.1:8081
cloudfront: http://127.0.0.1:8082
domains: [example.com]
validation:
  unknown_token: not_found
  event_log: off
tokens:
  - domain: example.com
    redirect_from: http://example.com/.well-known/pki-validation/0123abcd.txt
    redirect_to: https://validation.example.net/1/.well-known/pki-validation/0123abcd.txt
headers:
  x_forwarded_for: replace
  x_forwarded_proto: off
limits:
  header_bytes: 1024
  header_count: 12
  target_bytes: 200
  max_body_bytes: 64
  max_requests_per_connection: 4
  max_pipelined: 3
access_log: off
)"};

std::shared_ptr<const runtime::snapshot> make_runtime(const char* text) {
  static upstream::resolver_registry dns;
  const auto loaded = config::load_string(
      text, "fuzz.yaml", [](std::string_view) { return std::optional<std::string>(); });
  for (const auto& e : loaded.errors) {
    std::fprintf(stderr, "fuzz config: %s\n", e.to_string().c_str());
  }
  FUZZ_CHECK(loaded.errors.empty());
  std::vector<std::string> warnings;
  auto built = runtime::build_runtime(*loaded.cfg, dns, warnings);
  FUZZ_CHECK(std::holds_alternative<std::shared_ptr<const runtime::snapshot>>(built));
  return std::get<std::shared_ptr<const runtime::snapshot>>(built);
}

const std::shared_ptr<const runtime::snapshot>& runtime_for(int i) {
  static const std::shared_ptr<const runtime::snapshot> r[2] = {make_runtime(config_text[0]),
                                                                make_runtime(config_text[1])};
  return r[i];
}

// Bodies are read into a dynamic_body: a string_body would reserve a declared Content-Length
// up front (any size a fuzzed header names).
template <class Message> std::string body_of(const Message& m) {
  return beast::buffers_to_string(m.body().data());
}

// One request as the client sent it, by Beast's reading.
struct sent_request {
  std::string method;
  std::string body;
};

// The client's bytes as a sequence of requests: leading empty lines skipped as the session's
// head scanner does. `attempts`: requests whole, plus one for bytes after them that are not a
// whole request (a partial or refused one can still get an answer).
struct client_script {
  std::vector<sent_request> requests;
  std::size_t attempts = 0;
};

client_script read_client(std::string_view in) {
  client_script s;
  while (!in.empty()) {
    // Any bytes may get an answer: too many empty lines alone are a 400.
    ++s.attempts;
    while (in.starts_with("\r\n")) {
      in.remove_prefix(2);
    }
    if (in.empty()) {
      break;
    }
    bhttp::request_parser<bhttp::dynamic_body> p;
    p.eager(true);
    p.header_limit(64 * 1024);
    p.body_limit(boost::none);
    boost::system::error_code ec;
    const auto n = p.put(asio::buffer(in.data(), in.size()), ec);
    if (ec || !p.is_done()) {
      break;  // refused or cut short: at most one answer, then the connection closes
    }
    s.requests.push_back({std::string(p.get().method_string()), body_of(p.get())});
    in.remove_prefix(n);
  }
  return s;
}

// What one backend connection saw.
struct backend_exchange {
  std::size_t request_index = 0;  // which of the connection's requests it served
  std::string answer;             // the scripted answer
  std::string received;           // what the session sent it
  bool validation_route = false;
  bool head = false;
  bool tunnel = false;
  session::fault f;
};

struct harness {
  observe::counters counters;
  validation::event_store events;
  session::context w;
  session::client_info conn;
  asio::io_context ioc;
  test_stream client{ioc};       // the session's side of the client connection
  test_stream client_peer{ioc};  // the client
  std::size_t upstream_read_size = 0;
  std::vector<std::string_view> answers;
  std::size_t next_answer = 0;
  std::size_t requests_started = 0;
  std::deque<backend_exchange> backends;
  bool done = false;

  explicit harness(std::shared_ptr<const runtime::snapshot> rt) {
    w.runtime = std::move(rt);
    const auto& v = w.runtime->cfg->validation;
    events.configure(v.events, v.events_per_domain);  // off: no line per event
    w.report.counters = &counters;
    w.report.events = &events;
    conn.peer = "192.0.2.7:4711";
    conn.peer_ip = "192.0.2.7";
    client.connect(client_peer);
  }

  // One backend connection for the request `st` of the session: the next scripted answer,
  // then the end of the backend's stream.
  asio::awaitable<session::fault>
  to_upstream(const runtime::snapshot& rt, session::request_parser& parser,
              const session::prepared& req, session::body_buffer& chunk, session::request_state& st,
              beast::flat_buffer& cbuf) {
    backend_exchange& b = backends.emplace_back();  // a deque: the reference stays valid
    b.request_index = requests_started - 1;
    if (next_answer < answers.size()) {
      b.answer = answers[next_answer];
    }
    ++next_answer;
    b.validation_route = st.decision.kind == routing::route_kind::validation;
    b.head = st.head;
    test_stream up(ioc);
    test_stream up_peer(ioc);
    up.connect(up_peer);
    if (upstream_read_size != 0) {
      up.read_size(upstream_read_size);
    }
    up.append(b.answer);
    up.close_remote();
    beast::flat_buffer ubuf;
    http::head_storage fields;
    auto f = co_await session::exchange(up, ubuf, fields, client, cbuf, parser, req.head, chunk, st,
                                        *rt.cfg, req.expect_continue);
    b.received = std::string(up_peer.str());
    b.tunnel = st.tunnel;
    b.f = f;
    co_return f;
  }

  asio::awaitable<void> serve(std::string_view early) {
    session::session_handle handle;
    auto one_request = [this](beast::flat_buffer& cbuf, bool last) {
      ++requests_started;
      auto up = [this, &cbuf](const runtime::snapshot& rt, session::request_parser& parser,
                              const session::prepared& req, session::body_buffer& chunk,
                              session::request_state& st) {
        return to_upstream(rt, parser, req, chunk, st, cbuf);
      };
      return session::handle_request(w, client, cbuf, conn, last, up);
    };
    co_await session::serve_requests(&w, client, handle, early, false, one_request);
  }
};

// One response parsed from `in`; `skip`: the answer to a HEAD (no body).
struct parsed_response {
  bool ok = false;       // a whole response
  bool cut = false;      // a valid start, cut short at the end of the bytes
  std::size_t used = 0;  // bytes of `in` it took
  unsigned status = 0;
  bool keep_alive = true;
  std::string body;
};

parsed_response parse_response(std::string_view in, bool skip) {
  parsed_response r;
  bhttp::response_parser<bhttp::dynamic_body> p;
  p.eager(true);
  p.skip(skip);
  p.header_limit(128 * 1024);
  p.body_limit(boost::none);
  boost::system::error_code ec;
  r.used = p.put(asio::buffer(in.data(), in.size()), ec);
  if (ec == bhttp::error::need_more) {
    // All of `in` was offered: the message ends with the stream, or it was cut short.
    r.used = in.size();
    p.put_eof(ec);
    if (ec) {
      r.cut = true;
      return r;
    }
  } else if (ec) {
    return r;
  }
  if (!p.is_done()) {
    r.cut = true;
    return r;
  }
  r.ok = true;
  r.status = p.get().result_int();
  r.keep_alive = p.get().keep_alive();
  r.body = body_of(p.get());
  return r;
}

// The final answer in a backend's scripted bytes (1xx skipped), when Beast reads one whole.
std::optional<parsed_response> backend_final(std::string_view answer, bool head) {
  for (int n = 0; n < 64 && !answer.empty(); ++n) {
    auto r = parse_response(answer, head);
    if (!r.ok) {
      return std::nullopt;
    }
    answer.remove_prefix(r.used);
    if (r.status >= 100 && r.status < 200) {
      if (r.status == 101) {
        return std::nullopt;
      }
      continue;
    }
    return r;
  }
  return std::nullopt;
}

void dump(const char* what, std::string_view bytes) {
  std::fprintf(stderr, "--- %s (%zu bytes)\n", what, bytes.size());
  std::fwrite(bytes.data(), 1, bytes.size(), stderr);
  std::fprintf(stderr, "\n---\n");
}

void check_backend(const backend_exchange& b, const client_script& script) {
  std::string_view got = b.received;
  if (got.empty()) {
    return;  // the session failed before sending (nothing else to check)
  }
  bhttp::request_parser<bhttp::dynamic_body> p;
  p.eager(true);
  p.header_limit(128 * 1024);
  p.body_limit(boost::none);
  boost::system::error_code ec;
  const auto n = p.put(asio::buffer(got.data(), got.size()), ec);
  if ((ec && ec != bhttp::error::need_more) || !p.is_header_done()) {
    dump("backend received", got);
    std::fprintf(stderr, "parse: %s\n", ec.message().c_str());
  }
  FUZZ_CHECK(!ec || ec == bhttp::error::need_more);
  FUZZ_CHECK(p.is_header_done());
  const auto& req = p.get();
  FUZZ_CHECK(req.version() == 11);
  FUZZ_CHECK(req.count(bhttp::field::host) == 1);
  FUZZ_CHECK(!(req.chunked() && req.count(bhttp::field::content_length) > 0));
  if (b.validation_route) {
    FUZZ_CHECK(req.count(bhttp::field::cookie) == 0);
    FUZZ_CHECK(req.count(bhttp::field::authorization) == 0);
  }
  if (!p.is_done()) {
    return;  // the client's body ended early
  }
  if (n != got.size() && !b.tunnel) {
    dump("backend received", got);
  }
  FUZZ_CHECK(n == got.size() || b.tunnel);
  // Sent whole: the client sent it whole, same method, same body.
  FUZZ_CHECK(b.request_index < script.requests.size());
  const auto& sent = script.requests[b.request_index];
  FUZZ_CHECK(req.method_string() == sent.method);
  const auto body = body_of(req);
  if (body != sent.body) {
    dump("client body", sent.body);
    dump("backend body", body);
  }
  FUZZ_CHECK(body == sent.body);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) {
    return 0;
  }
  const std::uint8_t params = data[0];
  const std::uint8_t options = data[1];
  std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  constexpr std::string_view separator = "\n#~#\n";
  std::vector<std::string_view> parts;
  for (;;) {
    const auto at = rest.find(separator);
    parts.push_back(rest.substr(0, at));
    if (at == std::string_view::npos) {
      break;
    }
    rest.remove_prefix(at + separator.size());
  }
  const std::string_view client_bytes = parts.front();

  harness h(runtime_for(options & 1));
  h.answers.assign(parts.begin() + 1, parts.end());
  if (const auto rs = read_sizes[params & 7]; rs != 0) {
    h.client.read_size(rs);
  }
  h.upstream_read_size = read_sizes[(params >> 3) & 7];
  h.client.append(client_bytes);
  h.client.close_remote();  // the client half-closes: EOF after its bytes, still reading
  std::exception_ptr failed;
  asio::co_spawn(h.ioc, h.serve({}), [&](std::exception_ptr e) {
    failed = std::move(e);
    h.done = true;
  });
  h.ioc.run();
  FUZZ_CHECK(h.done);
  FUZZ_CHECK(!failed);

  if (std::getenv("FUZZ_SESSION_DUMP") != nullptr) {  // to read what one input does
    for (const auto& b : h.backends) {
      dump("backend received", b.received);
    }
    dump("client received", h.client_peer.str());
  }

  const auto script = read_client(client_bytes);
  for (const auto& b : h.backends) {
    check_backend(b, script);
  }

  // What the client received: responses in order, request i's final answer the i-th.
  const std::string out(h.client_peer.str());
  std::string_view left = out;
  std::size_t finals = 0;
  while (!left.empty()) {
    const bool head_request =
        finals < script.requests.size() && script.requests[finals].method == "HEAD";
    auto r = parse_response(left, head_request);
    if (head_request && r.ok && !r.keep_alive && r.used != left.size()) {
      // A HEAD the session refused before reading its head is answered with a body.
      r = parse_response(left, false);
    }
    if (!r.ok && !r.cut) {
      dump("client input", client_bytes);
      dump("client received", out);
      std::fprintf(stderr, "not a response at offset %zu\n", out.size() - left.size());
    }
    FUZZ_CHECK(r.ok || r.cut);
    if (r.cut) {
      break;  // a response cut short (its body's source failed): the connection closed
    }
    left.remove_prefix(r.used);
    if (r.status == 101) {
      break;  // tunnel bytes follow
    }
    if (r.status >= 100 && r.status < 200) {
      continue;
    }
    // The answer relayed from a backend is the backend's, status and body.
    for (const auto& b : h.backends) {
      if (b.request_index == finals && !b.f && !b.tunnel && !b.head) {
        if (auto want = backend_final(b.answer, false); want) {
          if (want->status != r.status || want->body != r.body) {
            dump("backend answer", b.answer);
            dump("client received", out);
          }
          FUZZ_CHECK(want->status == r.status);
          FUZZ_CHECK(want->body == r.body);
        }
      }
    }
    ++finals;
    if (!r.keep_alive && !left.empty()) {
      dump("client received", out);
    }
    FUZZ_CHECK(r.keep_alive || left.empty());
  }
  if (finals > script.attempts) {
    dump("client input", client_bytes);
    dump("client received", out);
  }
  FUZZ_CHECK(finals <= script.attempts);
  return 0;
}
