#include "config/upstream_url.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace cfg = wk::config;

TEST_CASE("upstream URLs give scheme, host, port and a default SNI") {
  struct row {
    std::string_view url;
    bool tls;
    std::string_view host;
    std::uint16_t port;
    std::string_view sni;
  };
  const row rows[] = {
      {"http://127.0.0.1:8081", false, "127.0.0.1", 8081, ""},
      {"http://d111111abcdef8.cloudfront.net", false, "d111111abcdef8.cloudfront.net", 80, ""},
      {"https://d111111abcdef8.cloudfront.net", true, "d111111abcdef8.cloudfront.net", 443,
       "d111111abcdef8.cloudfront.net"},
      {"HTTPS://Origin.Example.COM:8443/", true, "origin.example.com", 8443, "origin.example.com"},
      {"https://10.0.0.1", true, "10.0.0.1", 443, ""},
      {"https://[::1]:8443", true, "::1", 8443, ""},
      {"http://[2001:db8::1]/", false, "2001:db8::1", 80, ""},
      {"http://localhost", false, "localhost", 80, ""},
      {"http://my_backend:65535", false, "my_backend", 65535, ""},
  };
  for (const row& r : rows) {
    CAPTURE(r.url);
    const auto result = cfg::parse_upstream_url(r.url);
    REQUIRE(std::holds_alternative<cfg::upstream>(result));
    const auto& u = std::get<cfg::upstream>(result);
    CHECK(u.url == r.url);
    CHECK(u.tls == r.tls);
    CHECK(u.host == r.host);
    CHECK(u.port == r.port);
    CHECK(u.sni == r.sni);
    CHECK(u.verify);
    CHECK(u.ca_file.empty());
  }
}

TEST_CASE("upstream URLs outside the accepted shape are refused with a reason") {
  struct row {
    std::string_view url;
    std::string_view reason;
  };
  const row rows[] = {
      {"", "URL is empty"},
      {"ftp://example.com", "scheme must be http or https"},
      {"ws://example.com", "scheme must be http or https"},
      {"example.com",
       "invalid URL \"example.com\" (expected http://HOST[:PORT] or https://HOST[:PORT])"},
      {"http://exa mple.com",
       "invalid URL \"http://exa mple.com\" (expected http://HOST[:PORT] or https://HOST[:PORT])"},
      {"http://", "a host is required"},
      {"http:/example.com", "a host is required"},
      {"http://user:pw@example.com", "user info (\"user@\") is not allowed"},
      {"http://example.com/app", "a path is not allowed (only \"/\")"},
      {"http://example.com?x=1", "a query (\"?...\") is not allowed"},
      {"http://example.com#top", "a fragment (\"#...\") is not allowed"},
      {"http://example.com:0", "invalid port \"0\" (expected 1-65535)"},
      {"http://example.com:65536", "invalid port \"65536\" (expected 1-65535)"},
      {"http://example.com:", "invalid port \"\" (expected 1-65535)"},
      {"http://10.0.0.256", "invalid host \"10.0.0.256\""},
      {"http://-bad.example.com", "invalid host \"-bad.example.com\""},
      {"http://a..b", "invalid host \"a..b\""},
      {"http://ex%41mple.com", "invalid host \"ex%41mple.com\""},
      {"http://[v1.x]", "a host is required"},
  };
  for (const row& r : rows) {
    CAPTURE(r.url);
    const auto result = cfg::parse_upstream_url(r.url);
    REQUIRE(std::holds_alternative<std::string>(result));
    CHECK(std::get<std::string>(result) == r.reason);
  }
}

TEST_CASE("listen addresses are IP literals with a port") {
  struct row {
    std::string_view text;
    std::string_view host;
    std::uint16_t port;
  };
  const row rows[] = {
      {"127.0.0.1:8080", "127.0.0.1", 8080},
      {"0.0.0.0:80", "0.0.0.0", 80},
      {":80", "0.0.0.0", 80},
      {"[::1]:0", "::1", 0},
      {"[::]:443", "::", 443},
      {"[0:0::1]:8080", "::1", 8080},
      {"10.1.2.3:65535", "10.1.2.3", 65535},
  };
  for (const row& r : rows) {
    CAPTURE(r.text);
    const auto result = cfg::parse_listen_address(r.text);
    REQUIRE(std::holds_alternative<cfg::listener>(result));
    const auto& l = std::get<cfg::listener>(result);
    CHECK(l.address == r.text);
    CHECK(l.host == r.host);
    CHECK(l.port == r.port);
  }
}

TEST_CASE("listen addresses without an IP literal or a valid port are refused") {
  struct row {
    std::string_view text;
    std::string_view reason;
  };
  const row rows[] = {
      {"", "expected \"IP:PORT\" (the port is required)"},
      {"127.0.0.1", "expected \"IP:PORT\" (the port is required)"},
      {"localhost:80", "host must be an IP address, got \"localhost\""},
      {"256.0.0.1:80", "host must be an IP address, got \"256.0.0.1\""},
      {"::1:80", "an IPv6 address must be in brackets, e.g. \"[::1]:8080\""},
      {"[::1]", "expected \"[IPv6]:PORT\""},
      {"[::1]80", "expected \"[IPv6]:PORT\""},
      {"[::1:80", "expected \"[IPv6]:PORT\""},
      {"[1.2.3.4]:80", "invalid IPv6 address \"1.2.3.4\""},
      {"127.0.0.1:", "invalid port \"\" (expected 0-65535)"},
      {"127.0.0.1:65536", "invalid port \"65536\" (expected 0-65535)"},
      {"127.0.0.1:-1", "invalid port \"-1\" (expected 0-65535)"},
      {"127.0.0.1:http", "invalid port \"http\" (expected 0-65535)"},
  };
  for (const row& r : rows) {
    CAPTURE(r.text);
    const auto result = cfg::parse_listen_address(r.text);
    REQUIRE(std::holds_alternative<std::string>(result));
    CHECK(std::get<std::string>(result) == r.reason);
  }
}

TEST_CASE("an upstream key tells interchangeable connections apart") {
  cfg::upstream plain;
  plain.host = "d111111abcdef8.cloudfront.net";
  CHECK(plain.key() == "http://d111111abcdef8.cloudfront.net:80");

  cfg::upstream tls = plain;
  tls.tls = true;
  tls.port = 443;
  tls.sni = "d111111abcdef8.cloudfront.net";
  CHECK(tls.key() ==
        "https://d111111abcdef8.cloudfront.net:443|sni=d111111abcdef8.cloudfront.net|verify=1|ca=");

  SUBCASE("TLS settings are part of the key") {
    cfg::upstream other = tls;
    other.verify = false;
    other.ca_file = "/etc/ca.pem";
    other.sni = "";
    CHECK(other.key() == "https://d111111abcdef8.cloudfront.net:443|sni=|verify=0|ca=/etc/ca.pem");
  }
  SUBCASE("the name does not change the key") {
    cfg::upstream named = tls;
    named.name = "origin";
    CHECK(named.key() == tls.key());
  }
  SUBCASE("an IPv6 host is bracketed") {
    cfg::upstream v6;
    v6.host = "::1";
    v6.port = 8080;
    CHECK(v6.key() == "http://[::1]:8080");
  }
}

TEST_CASE("with_default_scheme: a scheme is added only where there is none") {
  using wk::config::with_default_scheme;
  CHECK(with_default_scheme("example.com/.well-known/pki-validation/a.txt", "http") ==
        "http://example.com/.well-known/pki-validation/a.txt");
  CHECK(with_default_scheme("http://example.com/a", "https") == "http://example.com/a");
  CHECK(with_default_scheme("HTTPS://example.com/a", "http") == "HTTPS://example.com/a");
  CHECK(with_default_scheme("svn+ssh://h/a", "http") == "svn+ssh://h/a");
  // A host with a port is not a scheme; neither is anything before "://" that is not one.
  CHECK(with_default_scheme("example.com:8080/a", "http") == "http://example.com:8080/a");
  CHECK(with_default_scheme("1ab://h/a", "http") == "http://1ab://h/a");
  CHECK(with_default_scheme("://h/a", "http") == "http://://h/a");
  CHECK(with_default_scheme("", "https") == "https://");
}

TEST_CASE("RedirectFrom and RedirectTo without a scheme parse as http and https") {
  const auto from = wk::config::parse_redirect_from(
      "Example.com/.well-known/pki-validation/b315c9ae21284e7918bb9f3f422ac3c7.txt",
      "/.well-known/pki-validation/");
  REQUIRE(std::holds_alternative<wk::config::redirect_from_parts>(from));
  CHECK(std::get<wk::config::redirect_from_parts>(from).domain == "example.com");
  const auto to = wk::config::parse_redirect_to(
      "validation.us-east-1.acm-validations.aws/123456789012/.well-known/pki-validation/x.txt");
  REQUIRE(std::holds_alternative<wk::config::redirect_to_parts>(to));
  CHECK(std::get<wk::config::redirect_to_parts>(to).host ==
        "validation.us-east-1.acm-validations.aws");
  CHECK(std::get<wk::config::redirect_to_parts>(to).port == 443);
  // An error names what was given, not what was assumed.
  const auto bad = wk::config::parse_redirect_to("exa mple/x");
  REQUIRE(std::holds_alternative<std::string>(bad));
  CHECK(std::get<std::string>(bad) == "invalid URL \"exa mple/x\"");
}
