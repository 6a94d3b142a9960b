#include "routing/route.hpp"

#include <doctest/doctest.h>

#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace routing = wk::routing;

namespace wk::routing {
// Readable failure messages.
std::ostream& operator<<(std::ostream& os, route_kind kind) {
  switch (kind) {
  case route_kind::origin:
    return os << "origin";
  case route_kind::validation:
    return os << "validation";
  case route_kind::reject:
    return os << "reject";
  }
  return os << "?";
}
}  // namespace wk::routing

namespace {

using routing::route_kind;

constexpr std::string_view P = "/.well-known/pki-validation/";

// One request and what route() must decide for it.
struct row {
  const char* name = "";
  // request
  std::string_view method = "GET";
  std::string_view target{};
  std::string_view host = "example.com";
  bool host_present = true;
  bool http11 = true;
  bool has_body = false;
  bool upgrade = false;
  // expected decision
  route_kind kind = route_kind::origin;
  unsigned status = 0;
  std::optional<std::string_view> upstream_target{};  // default: the target for origin, else ""
  std::string_view token{};
  std::string_view reason{};                       // checked when not empty
  std::optional<std::string_view> decided_host{};  // checked when set
  std::string_view authority{};                    // checked unless rejected
};

routing::route_table make_table(const std::vector<std::string>& domains,
                                std::string prefix = std::string(P)) {
  routing::route_table table;
  table.prefix = std::move(prefix);
  table.domains = routing::host_allow_list(domains);
  return table;
}

void check_rows(const routing::route_table& table, const std::vector<row>& rows) {
  for (const auto& r : rows) {
    SUBCASE(r.name) {
      routing::request_facts facts;
      facts.method = r.method;
      facts.target = r.target;
      facts.host = r.host_present ? r.host : std::string_view{};
      facts.host_present = r.host_present;
      facts.http11 = r.http11;
      facts.has_body = r.has_body;
      facts.upgrade = r.upgrade;

      const routing::decision d = routing::route(table, facts);
      // The per-request form reuses one decision and one scratch for every row, in whatever
      // order the rows run: nothing of an earlier request may show in a later decision.
      static routing::decision reused;
      static routing::route_scratch scratch;
      routing::route(table, facts, reused, scratch);
      CHECK(reused.kind == d.kind);
      CHECK(reused.status == d.status);
      CHECK(reused.reason == d.reason);
      CHECK(reused.host == d.host);
      CHECK(reused.token == d.token);
      CHECK(reused.upstream_target == d.upstream_target);
      CHECK(reused.authority == d.authority);
      CHECK(reused.origin_target == d.origin_target);

      CHECK(d.kind == r.kind);
      CHECK(d.status == r.status);
      const std::string_view default_upstream =
          r.kind == route_kind::origin ? r.target : std::string_view{};
      CHECK(d.upstream_target == r.upstream_target.value_or(default_upstream));
      CHECK(d.token == r.token);
      if (r.kind == route_kind::reject) {
        CHECK_FALSE(d.reason.empty());
      } else {
        CHECK(d.reason.empty());
        CHECK(d.authority == r.authority);
      }
      if (!r.reason.empty()) {
        CHECK(d.reason == r.reason);
      }
      if (r.decided_host) {
        CHECK(d.host == *r.decided_host);
      }
    }
  }
}

const routing::route_table& default_table() {
  static const routing::route_table table =
      make_table({"example.com", "www.example.com", "*.tenant.example"});
  return table;
}

}  // namespace

TEST_CASE("route sends a well-formed validation request to the validation route") {
  check_rows(default_table(),
             {
                 {.name = "plain GET of a token file",
                  .target = "/.well-known/pki-validation/abc123.txt",
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/abc123.txt",
                  .token = "abc123.txt",
                  .decided_host = "example.com"},
                 {.name = "HEAD",
                  .method = "HEAD",
                  .target = "/.well-known/pki-validation/abc123.txt",
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/abc123.txt",
                  .token = "abc123.txt"},
                 {.name = "second allowed domain",
                  .target = "/.well-known/pki-validation/t.txt",
                  .host = "www.example.com",
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/t.txt",
                  .token = "t.txt",
                  .decided_host = "www.example.com"},
                 {.name = "Host with a port",
                  .target = "/.well-known/pki-validation/t.txt",
                  .host = "example.com:80",
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/t.txt",
                  .token = "t.txt",
                  .decided_host = "example.com"},
                 {.name = "upper-case Host",
                  .target = "/.well-known/pki-validation/t.txt",
                  .host = "EXAMPLE.Com",
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/t.txt",
                  .token = "t.txt",
                  .decided_host = "example.com"},
                 {.name = "Host with a trailing dot",
                  .target = "/.well-known/pki-validation/t.txt",
                  .host = "example.com.",
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/t.txt",
                  .token = "t.txt",
                  .decided_host = "example.com"},
                 {.name = "Host matching a one-label wildcard",
                  .target = "/.well-known/pki-validation/t.txt",
                  .host = "shop.tenant.example",
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/t.txt",
                  .token = "t.txt",
                  .decided_host = "shop.tenant.example"},
                 {.name = "query kept with upper-cased hex",
                  .target = "/.well-known/pki-validation/t.txt?a=%2f&b",
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/t.txt?a=%2F&b",
                  .token = "t.txt"},
                 {.name = "empty query kept",
                  .target = "/.well-known/pki-validation/t.txt?",
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/t.txt?",
                  .token = "t.txt"},
                 {.name = "unreserved escape in the token decoded into the canonical target",
                  .target = "/.well-known/pki-validation/x%41y%2Etxt",
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/xAy.txt",
                  .token = "xAy.txt"},
                 {.name = "encoded unreserved characters in the prefix",
                  .target = "/%2Ewell-known/pki%2dvalidation/t.txt",
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/t.txt",
                  .token = "t.txt"},
                 {.name = "dot segments resolving inside the prefix go out canonical",
                  .target = "/.well-known/pki-validation/a/../t.txt",
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/t.txt",
                  .token = "t.txt"},
                 {.name = "a dot-dot token is only unsafe alone",
                  .target = "/.well-known/pki-validation/..t",
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/..t",
                  .token = "..t"},
                 {.name = "absolute-form: the authority replaces a mismatching Host header",
                  .target = "http://Example.com/.well-known/pki-validation/t.txt",
                  .host = "evil.example",
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/t.txt",
                  .token = "t.txt",
                  .decided_host = "example.com",
                  .authority = "example.com"},
                 {.name = "absolute-form with a port and a query",
                  .target = "HTTP://example.com:80/.well-known/pki-validation/t.txt?x=1",
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/t.txt?x=1",
                  .token = "t.txt",
                  .decided_host = "example.com",
                  .authority = "example.com:80"},
                 {.name = "HTTP/1.0 absolute-form takes its host from the authority",
                  .target = "http://example.com/.well-known/pki-validation/t.txt",
                  .host_present = false,
                  .http11 = false,
                  .kind = route_kind::validation,
                  .upstream_target = "/.well-known/pki-validation/t.txt",
                  .token = "t.txt",
                  .decided_host = "example.com",
                  .authority = "example.com"},
             });
}

TEST_CASE("route sends everything that is not exactly a validation request to the origin") {
  check_rows(
      default_table(),
      {
          {.name = "ordinary page", .target = "/index.html?x=%aa", .decided_host = "example.com"},
          {.name = "root", .target = "/"},
          {.name = "POST to a token file",
           .method = "POST",
           .target = "/.well-known/pki-validation/t.txt"},
          {.name = "methods are case-sensitive",
           .method = "get",
           .target = "/.well-known/pki-validation/t.txt"},
          {.name = "OPTIONS to a token file",
           .method = "OPTIONS",
           .target = "/.well-known/pki-validation/t.txt"},
          {.name = "Host not in the allow-list",
           .target = "/.well-known/pki-validation/t.txt",
           .host = "other.example",
           .decided_host = "other.example"},
          {.name = "two labels under a wildcard",
           .target = "/.well-known/pki-validation/t.txt",
           .host = "a.b.tenant.example"},
          {.name = "the wildcard's own domain",
           .target = "/.well-known/pki-validation/t.txt",
           .host = "tenant.example"},
          {.name = "a request body",
           .method = "GET",
           .target = "/.well-known/pki-validation/t.txt",
           .has_body = true},
          {.name = "a protocol upgrade",
           .target = "/.well-known/pki-validation/t.txt",
           .upgrade = true},
          {.name = "nested segment under the prefix",
           .target = "/.well-known/pki-validation/a/b.txt"},
          {.name = "empty token", .target = "/.well-known/pki-validation/"},
          {.name = "empty token with a query", .target = "/.well-known/pki-validation/?x"},
          {.name = "the prefix without its trailing slash",
           .target = "/.well-known/pki-validation"},
          {.name = "a lone dot token resolves to the empty token",
           .target = "/.well-known/pki-validation/."},
          {.name = "a trailing dot-dot resolving back to the prefix",
           .target = "/.well-known/pki-validation/t.txt/.."},
          {.name = "semicolon in the token", .target = "/.well-known/pki-validation/x;y.txt"},
          {.name = "encoded space in the token", .target = "/.well-known/pki-validation/x%20y.txt"},
          {.name = "encoded NUL in the token", .target = "/.well-known/pki-validation/t.txt%00"},
          {.name = "tilde in the token", .target = "/.well-known/pki-validation/~t"},
          {.name = "raw UTF-8 in the token", .target = "/.well-known/pki-validation/\xc3\xa9.txt"},
          {.name = "double-encoded dot-dot is not decoded twice",
           .target = "/.well-known/pki-validation/%252e%252e/x"},
          {.name = "case-different prefix is plain origin traffic",
           .target = "/.WELL-KNOWN/pki-validation/t.txt"},
          {.name = "another well-known path", .target = "/.well-known/acme-challenge/t"},
          {.name = "empty segment elsewhere", .target = "/static//img.png"},
          {.name = "encoded slash elsewhere", .target = "/api/a%2Fb"},
          {.name = "backslash elsewhere", .target = "/foo\\bar"},
          {.name = "dot segments elsewhere", .target = "/a/../b/./c"},
          {.name = "dot segments escaping elsewhere", .target = "/static/../../etc/passwd"},
          {.name = "asterisk-form OPTIONS",
           .method = "OPTIONS",
           .target = "*",
           .upstream_target = "*"},
          {.name = "HTTP/1.0 without Host",
           .target = "/.well-known/pki-validation/t.txt",
           .host_present = false,
           .http11 = false,
           .decided_host = ""},
          {.name = "HTTP/1.0 with Host is still checked against the allow-list",
           .target = "/.well-known/pki-validation/t.txt",
           .host = "other.example",
           .http11 = false},
          {.name = "absolute-form for a domain not in the allow-list, despite an allowed Host",
           .target = "http://evil.example/.well-known/pki-validation/t.txt",
           .upstream_target = "/.well-known/pki-validation/t.txt",
           .decided_host = "evil.example",
           .authority = "evil.example"},
          {.name = "absolute-form path and query forwarded exactly as sent",
           .target = "http://example.com:8080/a/./b%2f%7e?q=%aa&r=//",
           .upstream_target = "/a/./b%2f%7e?q=%aa&r=//",
           .decided_host = "example.com",
           .authority = "example.com:8080"},
          {.name = "absolute-form with an empty path",
           .target = "https://example.com",
           .upstream_target = "/",
           .authority = "example.com"},
          {.name = "absolute-form with an empty path and a query",
           .target = "http://example.com?a=%2f",
           .upstream_target = "/?a=%2f",
           .authority = "example.com"},
          {.name = "absolute-form with an empty query",
           .target = "http://example.com/a?",
           .upstream_target = "/a?",
           .authority = "example.com"},
      });
}

TEST_CASE("route rejects targets that the origin could read differently") {
  const std::string_view ambiguous = "ambiguous request target";
  std::vector<row> rows;
  const char* const targets[] = {
      "/.well-known/pki-validation/..",
      "/.well-known/pki-validation/../../admin",
      "/.well-known/pki-validation/../x.txt",
      "/.well-known/pki-validation/%2e%2e/x",
      "/.well-known/pki-validation/%2E%2e/x",
      "/.well-known/pki-validation/.%2e",
      "/.well-known/pki-validation/%2fetc",
      "/.well-known/pki-validation/%2Fetc",
      "/.well-known/pki-validation/a%2f..%2f..%2fadmin",
      "/.well-known/pki-validation/%5cx.txt",
      "/.well-known/pki-validation/%5Cx.txt",
      "/.well-known/pki-validation/\\x.txt",
      "/.well-known/pki-validation//x.txt",
      "/.well-known/pki-validation/x.txt//",
      "/.well-known//pki-validation/x.txt",
      "//.well-known/pki-validation/x.txt",
      "/.well-known%2fpki-validation/x.txt",
      "/.well-known/pki-validation%2Fx.txt",
      "/.well-known\\pki-validation\\x.txt",
      "/foo/..%2f.well-known/pki-validation/x.txt",
      "/foo/%2e%2e%2f.well-known/pki-validation/x.txt",
      "/foo%5c..%5c.well-known/pki-validation/x.txt",
      "/a//..//.well-known/pki-validation/x.txt",
      "http://example.com/.well-known/pki-validation/../x",
      "http://example.com//.well-known/pki-validation/x.txt",
  };
  for (const char* target : targets) {
    rows.push_back({.name = target,
                    .target = target,
                    .kind = route_kind::reject,
                    .status = 400,
                    .reason = ambiguous});
  }
  check_rows(default_table(), rows);
}

TEST_CASE("route rejects malformed requests before any routing") {
  check_rows(default_table(),
             {
                 {.name = "invalid escape under the prefix",
                  .target = "/.well-known/pki-validation/%zz",
                  .kind = route_kind::reject,
                  .status = 400,
                  .reason = "invalid percent-encoding"},
                 {.name = "truncated escape elsewhere",
                  .target = "/a%4",
                  .kind = route_kind::reject,
                  .status = 400,
                  .reason = "invalid percent-encoding"},
                 {.name = "invalid escape in the query",
                  .target = "/a?x=%",
                  .kind = route_kind::reject,
                  .status = 400,
                  .reason = "invalid percent-encoding"},
                 {.name = "fragment",
                  .target = "/.well-known/pki-validation/t.txt#x",
                  .kind = route_kind::reject,
                  .status = 400},
                 {.name = "control character",
                  .target = "/a\x01",
                  .kind = route_kind::reject,
                  .status = 400},
                 {.name = "asterisk-form with GET",
                  .target = "*",
                  .kind = route_kind::reject,
                  .status = 400},
                 {.name = "unsupported scheme",
                  .target = "ftp://example.com/",
                  .kind = route_kind::reject,
                  .status = 400},
                 {.name = "userinfo in absolute-form",
                  .target = "http://user@example.com/.well-known/pki-validation/t.txt",
                  .kind = route_kind::reject,
                  .status = 400},
                 {.name = "invalid absolute-form authority",
                  .target = "http://exa mple.com/",
                  .kind = route_kind::reject,
                  .status = 400},
                 {.name = "CONNECT",
                  .method = "CONNECT",
                  .target = "example.com:443",
                  .kind = route_kind::reject,
                  .status = 405,
                  .reason = "CONNECT is not supported"},
                 {.name = "CONNECT with a junk target",
                  .method = "CONNECT",
                  .target = "/x#y",
                  .kind = route_kind::reject,
                  .status = 405,
                  .reason = "CONNECT is not supported"},
                 {.name = "HTTP/1.1 without Host",
                  .target = "/index.html",
                  .host_present = false,
                  .kind = route_kind::reject,
                  .status = 400,
                  .reason = "missing Host header"},
                 {.name = "HTTP/1.1 absolute-form without Host",
                  .target = "http://example.com/",
                  .host_present = false,
                  .kind = route_kind::reject,
                  .status = 400,
                  .reason = "missing Host header"},
                 {.name = "invalid Host",
                  .target = "/index.html",
                  .host = "exa mple.com",
                  .kind = route_kind::reject,
                  .status = 400,
                  .reason = "invalid Host header"},
                 {.name = "empty Host",
                  .target = "/index.html",
                  .host = "",
                  .kind = route_kind::reject,
                  .status = 400,
                  .reason = "invalid Host header"},
                 {.name = "Host with userinfo",
                  .target = "/.well-known/pki-validation/t.txt",
                  .host = "user@example.com",
                  .kind = route_kind::reject,
                  .status = 400,
                  .reason = "invalid Host header"},
                 {.name = "HTTP/1.0 with an invalid Host",
                  .target = "/",
                  .host = "example.com:99999",
                  .http11 = false,
                  .kind = route_kind::reject,
                  .status = 400,
                  .reason = "invalid Host header"},
             });
}

TEST_CASE("route uses the table's prefix, methods and domains") {
  SUBCASE("a custom prefix") {
    const auto table = make_table({"example.com"}, "/.well-known/acme-challenge/");
    check_rows(table, {
                          {.name = "a token under the custom prefix",
                           .target = "/.well-known/acme-challenge/tok_EN-1",
                           .kind = route_kind::validation,
                           .upstream_target = "/.well-known/acme-challenge/tok_EN-1",
                           .token = "tok_EN-1"},
                          {.name = "the default prefix is now origin traffic",
                           .target = "/.well-known/pki-validation/t.txt"},
                          {.name = "the default prefix's tricks are no longer ambiguous",
                           .target = "/.well-known/pki-validation/%2fetc"},
                          {.name = "the custom prefix's tricks are",
                           .target = "/.well-known/acme-challenge/%2e%2e/x",
                           .kind = route_kind::reject,
                           .status = 400},
                      });
  }
  SUBCASE("a method list with only GET") {
    auto table = make_table({"example.com"});
    table.methods = {"GET"};
    check_rows(
        table,
        {
            {.name = "GET",
             .target = "/.well-known/pki-validation/t.txt",
             .kind = route_kind::validation,
             .upstream_target = "/.well-known/pki-validation/t.txt",
             .token = "t.txt"},
            {.name = "HEAD", .method = "HEAD", .target = "/.well-known/pki-validation/t.txt"},
        });
  }
  SUBCASE("the any-host pattern") {
    const auto table = make_table({"*"});
    check_rows(table, {
                          {.name = "any Host",
                           .target = "/.well-known/pki-validation/t.txt",
                           .host = "whatever.example:8080",
                           .kind = route_kind::validation,
                           .upstream_target = "/.well-known/pki-validation/t.txt",
                           .token = "t.txt"},
                          {.name = "an IPv6 Host",
                           .target = "/.well-known/pki-validation/t.txt",
                           .host = "[::1]:80",
                           .kind = route_kind::validation,
                           .upstream_target = "/.well-known/pki-validation/t.txt",
                           .token = "t.txt",
                           .decided_host = "::1"},
                          {.name = "no Host at all (HTTP/1.0)",
                           .target = "/.well-known/pki-validation/t.txt",
                           .host_present = false,
                           .http11 = false},
                      });
  }
  SUBCASE("an empty allow-list") {
    const auto table = make_table({});
    check_rows(table, {
                          {.name = "an otherwise valid validation request",
                           .target = "/.well-known/pki-validation/t.txt"},
                      });
  }
}

TEST_CASE("is_safe_token accepts only plain file names") {
  const std::string_view safe[] = {"a", "abc123.txt", "A-Z_a.z-0.9", "..a", "a..", "...", "-", "_"};
  const std::string_view unsafe[] = {"",     ".",   "..",       "a/b",
                                     "a;b",  "a b", "a%20b",    "a~b",
                                     "a\\b", "a:b", "\xc3\xa9", std::string_view("a\0b", 3)};
  for (const auto token : safe) {
    CAPTURE(token);
    CHECK(routing::is_safe_token(token));
  }
  for (const auto token : unsafe) {
    CAPTURE(token);
    CHECK_FALSE(routing::is_safe_token(token));
  }
}
