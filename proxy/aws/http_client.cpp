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

// Writes `req` and reads the answer on `stream` (plain or TLS), with `stream`'s deadline set by
// the caller.
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
  // A HEAD-less client: every answer has a body or none as its status says.
  auto [rec, rn] = co_await http::async_read(stream, buffer, parser, core::nothrow);
  (void)rn;
  if (rec) {
    co_return "read the answer of " + where + ": " +
        (core::is_timeout(rec) ? std::string("timed out") : rec.message());
  }
  auto msg = parser.release();
  http_response out;
  out.status = msg.result_int();
  for (const auto& field : msg) {
    out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  out.body = std::move(msg.body());
  co_return out;
}

}  // namespace

asio::awaitable<std::variant<http_response, std::string>>
http_client::send(const endpoint& to, http_request r, std::chrono::milliseconds timeout) {
  const auto ex = co_await asio::this_coro::executor;
  const std::string where = to.host_header();
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
  req.set(http::field::connection, "close");
  if (!r.body.empty() || r.method == "POST" || r.method == "PUT") {
    req.body() = std::move(r.body);
    req.prepare_payload();
  }

  beast::tcp_stream tcp(ex);
  tcp.expires_after(timeout);
  asio::ip::tcp::resolver resolver(ex);
  auto [dec, results] =
      co_await resolver.async_resolve(to.host, std::to_string(to.port), core::nothrow);
  if (dec) {
    co_return "resolve " + to.host + ": " + dec.message();
  }
  auto [cec, ep] = co_await tcp.async_connect(results, core::nothrow);
  (void)ep;
  if (cec) {
    co_return "connect to " + where + ": " +
        (core::is_timeout(cec) ? "timed out after " + std::to_string(timeout.count()) + " ms"
                               : cec.message());
  }
  if (!to.tls) {
    co_return co_await exchange(tcp, req, where);
  }
  beast::ssl_stream<beast::tcp_stream> tls(std::move(tcp), *tls_);
  if (net::expect_peer(tls.native_handle(), to.host, to.host) != net::peer_setup::ok) {
    co_return "TLS to " + where + ": cannot set the expected server name " + to.host;
  }
  auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::client, core::nothrow);
  if (hec) {
    const std::string why = net::verify_failure(tls.native_handle());
    co_return "TLS handshake with " + where + ": " +
        (!why.empty() ? why
                      : core::is_timeout(hec) ? std::string("timed out") : hec.message());
  }
  auto result = co_await exchange(tls, req, where);
  // Connection: close was asked for; the shutdown is best effort and not waited for long.
  beast::get_lowest_layer(tls).expires_after(std::chrono::seconds(1));
  (void)co_await tls.async_shutdown(core::nothrow);
  co_return result;
}

}  // namespace wk::aws
