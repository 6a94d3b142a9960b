#include "http/header_rules.hpp"

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

namespace bhttp = boost::beast::http;
using wk::config::forwarded_policy;
using wk::http::forward_options;

namespace {

using field_list = std::vector<std::pair<std::string, std::string>>;

bhttp::fields make_fields(const field_list& list) {
  bhttp::fields f;
  for (const auto& [k, v] : list) {
    f.insert(k, v);
  }
  return f;
}

field_list to_list(const bhttp::fields& f) {
  field_list out;
  for (const auto& x : f) {
    out.emplace_back(std::string(x.name_string()), std::string(x.value()));
  }
  return out;
}

forward_options origin_options() {
  forward_options o;
  o.client_ip = "192.0.2.7";
  o.proto = "http";
  return o;
}

}  // namespace

TEST_CASE("hop-by-hop and framing fields are never forwarded") {
  for (const char* name :
       {"Connection", "keep-alive", "Proxy-Connection", "TE", "Transfer-Encoding", "Upgrade",
        "Trailer", "Content-Length", "Expect", "Proxy-Authorization"}) {
    CAPTURE(name);
    CHECK(wk::http::is_hop_by_hop(name));
  }
  for (const char* name : {"Host", "Cookie", "Authorization", "X-Forwarded-For", "Accept"}) {
    CAPTURE(name);
    CHECK_FALSE(wk::http::is_hop_by_hop(name));
  }
}

TEST_CASE("the origin request keeps end-to-end fields in order and drops hop-by-hop ones") {
  auto in = make_fields({{"Host", "example.com"},
                         {"Connection", "keep-alive, X-Secret"},
                         {"X-Secret", "named in Connection"},
                         {"Cookie", "a=1"},
                         {"Transfer-Encoding", "chunked"},
                         {"Accept", "*/*"},
                         {"Upgrade", "websocket"}});
  bhttp::fields out;
  wk::http::build_upstream_request_fields(in, out, origin_options());
  CHECK(to_list(out) == field_list{{"Host", "example.com"},
                                   {"Cookie", "a=1"},
                                   {"Accept", "*/*"},
                                   {"X-Forwarded-For", "192.0.2.7"},
                                   {"X-Forwarded-Proto", "http"}});
}

TEST_CASE("X-Forwarded-For follows its policy") {
  auto in = make_fields(
      {{"Host", "h"}, {"X-Forwarded-For", "10.0.0.1"}, {"X-Forwarded-For", "10.0.0.2"}});
  auto opt = origin_options();
  opt.x_forwarded_proto = forwarded_policy::off;
  bhttp::fields out;
  SUBCASE("append joins what the client sent and adds the client address") {
    opt.x_forwarded_for = forwarded_policy::append;
    wk::http::build_upstream_request_fields(in, out, opt);
    CHECK(out["X-Forwarded-For"] == "10.0.0.1, 10.0.0.2, 192.0.2.7");
    CHECK(out.count("X-Forwarded-For") == 1);
  }
  SUBCASE("replace keeps only the client address") {
    opt.x_forwarded_for = forwarded_policy::replace;
    wk::http::build_upstream_request_fields(in, out, opt);
    CHECK(to_list(out) == field_list{{"Host", "h"}, {"X-Forwarded-For", "192.0.2.7"}});
  }
  SUBCASE("off passes the client's fields through untouched") {
    opt.x_forwarded_for = forwarded_policy::off;
    wk::http::build_upstream_request_fields(in, out, opt);
    CHECK(to_list(out) == field_list{{"Host", "h"},
                                     {"X-Forwarded-For", "10.0.0.1"},
                                     {"X-Forwarded-For", "10.0.0.2"}});
  }
}

TEST_CASE("X-Forwarded-Proto follows its policy") {
  auto opt = origin_options();
  opt.x_forwarded_for = forwarded_policy::off;
  bhttp::fields out;
  SUBCASE("append keeps a value the client sent") {
    wk::http::build_upstream_request_fields(
        make_fields({{"Host", "h"}, {"X-Forwarded-Proto", "https"}}), out, opt);
    CHECK(to_list(out) == field_list{{"Host", "h"}, {"X-Forwarded-Proto", "https"}});
  }
  SUBCASE("append sets it when absent") {
    wk::http::build_upstream_request_fields(make_fields({{"Host", "h"}}), out, opt);
    CHECK(out["X-Forwarded-Proto"] == "http");
  }
  SUBCASE("replace overwrites the client's value") {
    opt.x_forwarded_proto = forwarded_policy::replace;
    wk::http::build_upstream_request_fields(
        make_fields({{"Host", "h"}, {"X-Forwarded-Proto", "https"}}), out, opt);
    CHECK(to_list(out) == field_list{{"Host", "h"}, {"X-Forwarded-Proto", "http"}});
  }
}

TEST_CASE("the validation route forwards only what a certificate authority needs") {
  auto in = make_fields({{"Host", "example.com"},
                         {"User-Agent", "validator/1.0"},
                         {"Cookie", "session=secret"},
                         {"Authorization", "Bearer secret"},
                         {"Accept", "*/*"},
                         {"X-Custom", "x"},
                         {"X-Forwarded-Proto", "https"}});
  auto opt = origin_options();
  opt.validation_route = true;
  bhttp::fields out;
  wk::http::build_upstream_request_fields(in, out, opt);
  CHECK(to_list(out) == field_list{{"Host", "example.com"},
                                   {"User-Agent", "validator/1.0"},
                                   {"Accept", "*/*"},
                                   {"X-Forwarded-For", "192.0.2.7"},
                                   {"X-Forwarded-Proto", "http"}});
}

TEST_CASE("an absolute-form authority replaces Host, and a missing Host gets the default") {
  auto opt = origin_options();
  opt.x_forwarded_for = forwarded_policy::off;
  opt.x_forwarded_proto = forwarded_policy::off;
  bhttp::fields out;
  SUBCASE("authority wins over the Host header") {
    opt.authority = "tenant.example:8080";
    wk::http::build_upstream_request_fields(make_fields({{"Host", "other.example"}}), out, opt);
    CHECK(to_list(out) == field_list{{"Host", "tenant.example:8080"}});
  }
  SUBCASE("HTTP/1.0 without Host gets the upstream's host") {
    opt.default_host = "127.0.0.1";
    wk::http::build_upstream_request_fields(make_fields({{"Accept", "*/*"}}), out, opt);
    CHECK(to_list(out) == field_list{{"Accept", "*/*"}, {"Host", "127.0.0.1"}});
  }
}

TEST_CASE("a Connection token never removes Host, framing or the proxy's X-Forwarded-*") {
  // "Connection: Host" once made the origin (or CloudFront) see the upstream's configured host.
  auto in = make_fields({{"Host", "tenant.example"},
                         {"Connection", "Host, Content-Length, X-Forwarded-For, X-Forwarded-Proto"},
                         {"X-Forwarded-For", "10.9.9.9"},
                         {"X-Forwarded-Proto", "https"},
                         {"Accept", "*/*"}});
  auto opt = origin_options();
  opt.default_host = "origin.internal";
  opt.x_forwarded_for = forwarded_policy::replace;
  opt.x_forwarded_proto = forwarded_policy::replace;
  SUBCASE("origin route") {
    bhttp::fields out;
    wk::http::build_upstream_request_fields(in, out, opt);
    CHECK(to_list(out) == field_list{{"Host", "tenant.example"},
                                     {"Accept", "*/*"},
                                     {"X-Forwarded-For", "192.0.2.7"},
                                     {"X-Forwarded-Proto", "http"}});
  }
  SUBCASE("validation route: CloudFront sees the customer's Host") {
    opt.validation_route = true;
    bhttp::fields out;
    wk::http::build_upstream_request_fields(in, out, opt);
    CHECK(out["Host"] == "tenant.example");
    CHECK(out.count("Host") == 1);
  }
  SUBCASE("as bytes on the hot path") {
    std::string bytes;
    wk::http::head_writer w(bytes);
    wk::http::build_upstream_request_fields(in, w, opt);
    CHECK(bytes.starts_with("Host: tenant.example\r\n"));
    CHECK(bytes.find("origin.internal") == std::string::npos);
  }
}

TEST_CASE("response fields lose hop-by-hop fields and those named in Connection") {
  auto in = make_fields({{"Content-Type", "text/plain"},
                         {"Connection", "close, X-Internal"},
                         {"X-Internal", "1"},
                         {"Keep-Alive", "timeout=5"},
                         {"Set-Cookie", "a=1"},
                         {"Set-Cookie", "b=2"},
                         {"Transfer-Encoding", "chunked"}});
  bhttp::fields out;
  wk::http::build_downstream_response_fields(in, out);
  CHECK(to_list(out) ==
        field_list{{"Content-Type", "text/plain"}, {"Set-Cookie", "a=1"}, {"Set-Cookie", "b=2"}});
}

TEST_CASE("an upgrade is passed on as Upgrade plus Connection: upgrade, nothing else hop-by-hop") {
  auto in = make_fields({{"Host", "h"},
                         {"Connection", "Upgrade, Keep-Alive"},
                         {"Upgrade", "websocket"},
                         {"Keep-Alive", "timeout=5"},
                         {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}});
  auto opt = origin_options();
  opt.x_forwarded_for = forwarded_policy::off;
  opt.x_forwarded_proto = forwarded_policy::off;
  opt.upgrade = "websocket";
  bhttp::fields out;
  wk::http::build_upstream_request_fields(in, out, opt);
  CHECK(to_list(out) == field_list{{"Host", "h"},
                                   {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                                   {"Upgrade", "websocket"},
                                   {"Connection", "upgrade"}});
}

TEST_CASE("a 101 answer keeps Upgrade and says Connection: upgrade") {
  auto in = make_fields({{"Upgrade", "websocket"},
                         {"Connection", "Upgrade"},
                         {"Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}});
  bhttp::fields out;
  wk::http::build_downstream_response_fields(in, out, true);
  CHECK(to_list(out) == field_list{{"Upgrade", "websocket"},
                                   {"Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
                                   {"Connection", "upgrade"}});
}

TEST_CASE("trailer fields: safe ones pass, framing, routing, auth, controls and ours do not") {
  using wk::http::trailer_allowed;
  for (std::string_view name : {"X-Checksum", "Server-Timing", "Digest", "grpc-status", "ETag"}) {
    CAPTURE(name);
    CHECK(trailer_allowed(bhttp::string_to_field(name), name, ""));
  }
  for (std::string_view name : {"Host",
                                "Content-Length",
                                "Transfer-Encoding",
                                "Trailer",
                                "Connection",
                                "Keep-Alive",
                                "TE",
                                "Upgrade",
                                "Authorization",
                                "Proxy-Authorization",
                                "Cookie",
                                "Set-Cookie",
                                "WWW-Authenticate",
                                "Cache-Control",
                                "Pragma",
                                "Range",
                                "If-Match",
                                "If-None-Match",
                                "Age",
                                "Date",
                                "Expires",
                                "Location",
                                "Retry-After",
                                "Vary",
                                "Content-Type",
                                "Content-Encoding",
                                "Content-Range",
                                "Forwarded",
                                "Via",
                                "X-Forwarded-For",
                                "x-forwarded-proto",
                                "X-Forwarded-Host",
                                "X-Real-IP",
                                "Expect",
                                "Max-Forwards"}) {
    CAPTURE(name);
    CHECK_FALSE(trailer_allowed(bhttp::string_to_field(name), name, ""));
  }
  // A field the message's Connection names is for this hop only.
  CHECK_FALSE(trailer_allowed(bhttp::field::unknown, "X-Hop", "keep-alive, x-hop"));
  CHECK(trailer_allowed(bhttp::field::unknown, "X-Hop", "keep-alive"));
}

TEST_CASE("trailer fields are appended as lines, within a byte limit") {
  std::string out;
  CHECK(wk::http::append_trailer(out, bhttp::field::unknown, "X-A", "1", ""));
  CHECK_FALSE(wk::http::append_trailer(out, bhttp::field::host, "Host", "evil", ""));
  CHECK(out == "X-A: 1\r\n");
  const std::string big(wk::http::trailer_bytes_limit, 'v');
  CHECK_FALSE(wk::http::append_trailer(out, bhttp::field::unknown, "X-Big", big, ""));
  CHECK(out == "X-A: 1\r\n");
}
