// The request path on untrusted bytes: raw head checks -> Beast parse -> request checks ->
// normalize + route -> the header a backend receives, serialized. Invariants: the scanner
// gives the same answer fed in two pieces as in one; whatever is sent to a backend passes the
// proxy's own strict checks again, with the routed target, exactly one Host, framing chosen by
// the proxy, and (validation route) no credentials.

#include "fuzz_check.hpp"
#include "http/upstream_request.hpp"
#include "routing/route.hpp"
#include "wire/request_head.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/write.hpp>

#include <array>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <string>
#include <string_view>

namespace bhttp = boost::beast::http;
using namespace wk;  // NOLINT: a fuzz entry point, not library code

namespace {

wire::head_limits head_limits_of(const config::limits& l) {
  return {l.header_bytes, l.target_bytes, l.header_count};
}

const routing::route_table& table() {
  static const routing::route_table t = [] {
    routing::route_table r;
    r.domains = routing::host_allow_list({"example.com", "*.example.org"});
    return r;
  }();
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  config::limits limits;
  limits.header_bytes = 4096;
  limits.target_bytes = 1024;
  limits.header_count = 20;

  wire::request_head_scanner whole{head_limits_of(limits)};
  const auto r = whole.scan(in);
  wire::request_head_scanner pieces{head_limits_of(limits)};
  auto split = pieces.scan(in.substr(0, size / 2));
  if (split.status == wire::head_status::incomplete) {
    split = pieces.scan(in);
  }
  FUZZ_CHECK(split.status == r.status);
  if (r.status != wire::head_status::complete) {
    return 0;
  }
  FUZZ_CHECK(r.skip + r.length <= size);

  bhttp::request_parser<bhttp::buffer_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(limits.header_bytes));
  boost::system::error_code ec;
  const auto head = in.substr(r.skip, r.length);
  const auto used = parser.put(boost::asio::buffer(head.data(), head.size()), ec);
  if (ec) {
    return 0;  // framing Beast refuses (400)
  }
  FUZZ_CHECK(used == head.size() && parser.is_header_done());
  const auto& req = parser.get();
  std::string detail;
  if (http::check_request(req, limits, detail) != core::failure::none) {
    return 0;
  }

  const bool has_body = !parser.is_done();
  const auto d = routing::route(table(), http::facts_of(req, has_body));
  if (d.kind == routing::route_kind::reject) {
    FUZZ_CHECK(d.status >= 400 && d.status < 500);
    return 0;
  }
  http::forward_options opt;
  opt.validation_route = d.kind == routing::route_kind::validation;
  opt.client_ip = "192.0.2.1";
  opt.proto = "http";
  opt.authority = d.authority;
  opt.default_host = "origin.internal";
  http::body_framing framing;
  framing.chunked = parser.chunked();
  if (auto cl = parser.content_length(); cl && !framing.chunked) {
    framing.length = *cl;
  }
  const auto fields_in = std::distance(req.begin(), req.end());
  std::string sent;
  http::build_upstream_request(req, d, opt, framing, sent);
  // The session parses the body only after building the upstream header (trailers are merged
  // into the parsed header by Beast and must not reach a backend as header fields).
  // The body as the session's prefetch reads it (exercises Beast's chunk decoder).
  std::array<char, 512> body{};
  auto rest = in.substr(r.skip + r.length);
  while (!parser.is_done() && !rest.empty()) {
    parser.get().body().data = body.data();
    parser.get().body().size = body.size();
    const auto n = parser.put(boost::asio::buffer(rest.data(), rest.size()), ec);
    rest.remove_prefix(n);
    if (ec == bhttp::error::need_buffer || (ec == bhttp::error::need_more && n > 0)) {
      continue;
    }
    break;
  }

  // What a backend receives is a well-formed head by the proxy's own rules.
  config::limits relaxed;
  relaxed.header_bytes = 64 * 1024;
  relaxed.header_count = 64;
  wire::request_head_scanner check{head_limits_of(relaxed)};
  const auto again = check.scan(sent);
  if (again.status != wire::head_status::complete) {
    std::fprintf(stderr, "sent head rejected (%.*s):\n", static_cast<int>(again.reason.size()),
                 again.reason.data());
    std::fwrite(sent.data(), 1, sent.size(), stderr);
  }
  FUZZ_CHECK(again.status == wire::head_status::complete);
  FUZZ_CHECK(again.skip == 0 && again.length == sent.size());
  bhttp::request_parser<bhttp::empty_body> reparsed;
  reparsed.put(boost::asio::buffer(sent.data(), sent.size()), ec);
  FUZZ_CHECK(!ec || ec == bhttp::error::need_more);
  FUZZ_CHECK(reparsed.is_header_done());
  const auto& back = reparsed.get();
  FUZZ_CHECK(http::check_request(back, relaxed, detail) == core::failure::none);
  FUZZ_CHECK(back.method_string() == req.method_string());
  FUZZ_CHECK(back.target() == d.upstream_target);
  FUZZ_CHECK(back.count(bhttp::field::host) == 1);
  // Only what the client sent, plus Host, X-Forwarded-For/-Proto and the framing field.
  FUZZ_CHECK(std::distance(back.begin(), back.end()) <= fields_in + 4);
  FUZZ_CHECK(back.chunked() == framing.chunked);
  FUZZ_CHECK(!(back.chunked() && back.count(bhttp::field::content_length) > 0));
  if (d.kind == routing::route_kind::validation) {
    FUZZ_CHECK(back.count(bhttp::field::cookie) == 0);
    FUZZ_CHECK(back.count(bhttp::field::authorization) == 0);
    FUZZ_CHECK(routing::is_safe_token(d.token));
  }
  return 0;
}
