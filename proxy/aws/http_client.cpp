#include "aws/http_client.hpp"

#include "core/ascii.hpp"
#include "net/tls_context.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>

namespace wk::aws {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

std::string endpoint::host_header() const {
  const std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return (port == (tls ? 443 : 80)) ? h : h + ":" + std::to_string(port);
}

std::variant<endpoint, std::string> parse_endpoint(std::string_view url) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed) {
    return "invalid URL " + std::string(url) + ": " + parsed.error().message();
  }
  const auto& u = *parsed;
  endpoint out;
  out.url = std::string(url);
  const std::string scheme = core::to_lower(u.scheme());
  if (scheme != "http" && scheme != "https") {
    return "invalid URL " + std::string(url) + ": the scheme must be http or https";
  }
  out.tls = scheme == "https";
  if (u.has_userinfo() || u.has_fragment()) {
    return "invalid URL " + std::string(url) + ": no user info or fragment allowed";
  }
  out.host = u.host_type() == boost::urls::host_type::ipv6 ? std::string(u.encoded_host_address())
                                                           : std::string(u.encoded_host());
  if (out.host.size() > 2 && out.host.front() == '[') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  if (out.host.empty()) {
    return "invalid URL " + std::string(url) + ": no host";
  }
  out.port = out.tls ? 443 : 80;
  if (u.has_port()) {
    if (u.port_number() == 0) {
      return "invalid URL " + std::string(url) + ": invalid port";
    }
    out.port = u.port_number();
  }
  out.path = std::string(u.encoded_path());
  while (!out.path.empty() && out.path.back() == '/') {
    out.path.pop_back();
  }
  out.query = std::string(u.encoded_query());
  return out;
}

std::string http_response::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (core::iequals(n, name)) {
      return v;
    }
  }
  return {};
}

struct http_client::connection {
  std::string key;
  std::unique_ptr<beast::tcp_stream> plain;                      // http
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> secure;  // https
  std::chrono::steady_clock::time_point idle_since;

  beast::tcp_stream& lowest() { return plain ? *plain : beast::get_lowest_layer(*secure); }
};

http_client::http_client(std::shared_ptr<asio::ssl::context> tls) : tls_(std::move(tls)) {}

http_client::~http_client() = default;

void http_client::close_idle() {
  idle_.clear();
}

std::variant<std::shared_ptr<http_client>, std::string>
http_client::make(const std::string& ca_bundle) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression);
  boost::system::error_code ec;
  ctx->set_verify_mode(asio::ssl::verify_peer, ec);
  if (!ca_bundle.empty()) {
    ctx->load_verify_file(ca_bundle, ec);
    if (ec) {
      return "cannot load the CA bundle " + ca_bundle + " (AWS_CA_BUNDLE): " + ec.message();
    }
  } else {
    ctx->set_default_verify_paths(ec);
    if (ec) {
      return "cannot load the system CA store: " + ec.message();
    }
  }
  return std::shared_ptr<http_client>(new http_client(std::move(ctx)));
}

namespace {

// Writes `req` and reads the answer on `stream` (plain or TLS), under the deadline the caller
// set on its lowest layer.
template <class Stream>
asio::awaitable<std::variant<http_response, std::string>>
exchange(Stream& stream, http::request<http::string_body>& req, const std::string& where) {
  auto [wec, wn] = co_await http::async_write(stream, req, core::nothrow);
  (void)wn;
  if (wec) {
    co_return "send to " + where + ": " +
        (core::is_timeout(wec) ? std::string("timed out") : wec.message());
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(http_client::max_body);
  parser.header_limit(64 * 1024);
  auto [rec, rn] = co_await http::async_read(stream, buffer, parser, core::nothrow);
  (void)rn;
  if (rec) {
    co_return "read the answer of " + where + ": " +
        (core::is_timeout(rec) ? std::string("timed out") : rec.message());
  }
  auto msg = parser.release();
  http_response out;
  out.status = msg.result_int();
  // Bytes after the answer would belong to no request: such a connection is not reused.
  out.keep_alive = msg.keep_alive() && buffer.size() == 0;
  for (const auto& field : msg) {
    out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  out.body = std::move(msg.body());
  co_return out;
}

std::string key_of(const endpoint& to) {
  return (to.tls ? "https://" : "http://") + to.host_header();
}

}  // namespace

asio::awaitable<std::variant<std::unique_ptr<http_client::connection>, std::string>>
http_client::connect(const endpoint& to, std::chrono::milliseconds timeout) {
  const auto ex = co_await asio::this_coro::executor;
  const std::string where = to.host_header();
  auto tcp = std::make_unique<beast::tcp_stream>(ex);
  tcp->expires_after(timeout);
  asio::ip::tcp::resolver resolver(ex);
  auto [dec, results] =
      co_await resolver.async_resolve(to.host, std::to_string(to.port), core::nothrow);
  if (dec) {
    co_return "resolve " + to.host + ": " + dec.message();
  }
  auto [cec, ep] = co_await tcp->async_connect(results, core::nothrow);
  (void)ep;
  if (cec) {
    co_return "connect to " + where + ": " +
        (core::is_timeout(cec) ? "timed out after " + std::to_string(timeout.count()) + " ms"
                               : cec.message());
  }
  auto c = std::make_unique<connection>();
  c->key = key_of(to);
  ++made_;
  if (!to.tls) {
    c->plain = std::move(tcp);
    co_return c;
  }
  c->secure = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(std::move(*tcp), *tls_);
  if (net::expect_peer(c->secure->native_handle(), to.host, to.host) != net::peer_setup::ok) {
    co_return "TLS to " + where + ": cannot set the expected server name " + to.host;
  }
  auto [hec] = co_await c->secure->async_handshake(asio::ssl::stream_base::client, core::nothrow);
  if (hec) {
    const std::string why = net::verify_failure(c->secure->native_handle());
    co_return "TLS handshake with " + where + ": " +
        (!why.empty()            ? why
         : core::is_timeout(hec) ? std::string("timed out")
                                 : hec.message());
  }
  co_return c;
}

asio::awaitable<std::variant<http_response, std::string>>
http_client::send(const endpoint& to, http_request r, std::chrono::milliseconds timeout) {
  const std::string where = to.host_header();
  const std::string key = key_of(to);
  http::request<http::string_body> req;
  req.method_string(r.method);
  req.target(r.target);
  req.version(11);
  bool has_host = false;
  for (auto& [n, v] : r.headers) {
    has_host = has_host || core::iequals(n, "host");
    req.insert(n, v);
  }
  if (!has_host) {
    req.set(http::field::host, to.host_header());
  }
  if (!r.body.empty() || r.method == "POST" || r.method == "PUT") {
    req.body() = std::move(r.body);
    req.prepare_payload();
  }
  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<connection> c;
    auto& kept = idle_[key];
    const auto now = std::chrono::steady_clock::now();
    while (!kept.empty() && !c) {
      c = std::move(kept.back());
      kept.pop_back();
      if (now - c->idle_since > max_idle) {
        c.reset();  // probably closed by the server by now
      }
    }
    const bool reused = c != nullptr;
    if (!c) {
      auto made = co_await connect(to, timeout);
      if (auto* reason = std::get_if<std::string>(&made)) {
        co_return *reason;
      }
      c = std::get<std::unique_ptr<connection>>(std::move(made));
    }
    c->lowest().expires_after(timeout);
    // Not `a ? co_await x : co_await y`: GCC 12 destroys the result of such an expression
    // twice inside a coroutine.
    std::variant<http_response, std::string> result;
    if (c->plain) {
      result = co_await exchange(*c->plain, req, where);
    } else {
      result = co_await exchange(*c->secure, req, where);
    }
    if (std::holds_alternative<std::string>(result) && reused && attempt == 0) {
      continue;  // the server closed the kept connection meanwhile: once more, on a new one
    }
    if (auto* resp = std::get_if<http_response>(&result);
        resp != nullptr && resp->keep_alive && idle_[key].size() < max_idle_per_endpoint) {
      c->lowest().expires_never();
      c->idle_since = std::chrono::steady_clock::now();
      idle_[key].push_back(std::move(c));
    }
    co_return result;
  }
}

}  // namespace wk::aws
