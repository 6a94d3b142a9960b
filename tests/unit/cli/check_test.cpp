// The pure parts of `wkproxy check`: arguments, URLs and redirects, the hop policy, failure
// reasons and the two output formats. The network steps are covered by
// tests/integration/test_check.py.

#include "cli/check.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>

#include <string>
#include <vector>

namespace v = wk::cli;

namespace {

v::fetch_url url(std::string_view text) {
  auto parsed = v::parse_fetch_url(text);
  REQUIRE_MESSAGE(std::holds_alternative<v::fetch_url>(parsed), std::string(text));
  return std::get<v::fetch_url>(parsed);
}

std::string error_of(const std::variant<v::fetch_url, std::string>& r) {
  REQUIRE(std::holds_alternative<std::string>(r));
  return std::get<std::string>(r);
}

v::parsed_args parse(std::vector<std::string_view> args) {
  return v::parse_check_args(args);
}

}  // namespace

TEST_CASE("absolute URLs are parsed into scheme, host, port and target") {
  struct row {
    const char* in;
    bool https;
    const char* host;
    std::uint16_t port;
    const char* target;
    const char* text;
  };
  const row rows[] = {
      {"http://Example.COM/.well-known/pki-validation/a.txt", false, "example.com", 80,
       "/.well-known/pki-validation/a.txt", "http://example.com/.well-known/pki-validation/a.txt"},
      {"https://validation.us-east-1.acm-validations.aws/1234/x.txt", true,
       "validation.us-east-1.acm-validations.aws", 443, "/1234/x.txt",
       "https://validation.us-east-1.acm-validations.aws/1234/x.txt"},
      {"https://localhost:8443/a?b=c#frag", true, "localhost", 8443, "/a?b=c",
       "https://localhost:8443/a?b=c"},
      {"http://127.0.0.1:80", false, "127.0.0.1", 80, "/", "http://127.0.0.1/"},
      {"http://[::1]:8080/x", false, "::1", 8080, "/x", "http://[::1]:8080/x"},
      {"https://h:443/", true, "h", 443, "/", "https://h/"},
  };
  for (const row& r : rows) {
    CAPTURE(std::string(r.in));
    const auto u = url(r.in);
    CHECK(u.https == r.https);
    CHECK(u.host == r.host);
    CHECK(u.port == r.port);
    CHECK(u.target == r.target);
    CHECK(u.text() == r.text);
  }
}

TEST_CASE("URLs the checker cannot fetch are refused with a reason") {
  CHECK(error_of(v::parse_fetch_url("ftp://example.com/x")).find("http or https") !=
        std::string::npos);
  CHECK(error_of(v::parse_fetch_url("/relative")).find("invalid URL") != std::string::npos);
  CHECK(error_of(v::parse_fetch_url("http://user@example.com/")).find("user info") !=
        std::string::npos);
  CHECK(error_of(v::parse_fetch_url("http://example.com:99999/")).find("invalid port") !=
        std::string::npos);
  CHECK(error_of(v::parse_fetch_url("http:///x")).find("no host") != std::string::npos);
}

TEST_CASE("the Host header carries the port only when it is not the scheme's default") {
  CHECK(url("http://example.com/").authority() == "example.com");
  CHECK(url("http://example.com:8080/").authority() == "example.com:8080");
  CHECK(url("https://example.com:443/").authority() == "example.com");
  CHECK(url("https://example.com:80/").authority() == "example.com:80");
  CHECK(url("http://[::1]:81/").authority() == "[::1]:81");
}

TEST_CASE("Location values are resolved against the URL that answered") {
  const auto base = url("http://example.com/.well-known/pki-validation/a.txt");
  struct row {
    const char* location;
    const char* expected;
  };
  const row rows[] = {
      {"https://validation.acm.aws/1/a.txt", "https://validation.acm.aws/1/a.txt"},
      {"/other/b.txt", "http://example.com/other/b.txt"},
      {"b.txt", "http://example.com/.well-known/pki-validation/b.txt"},
      {"../x", "http://example.com/.well-known/x"},
      {"//cdn.example.net/p", "http://cdn.example.net/p"},
      {"?q=1", "http://example.com/.well-known/pki-validation/a.txt?q=1"},
      {"HTTPS://Localhost:8443/p#f", "https://localhost:8443/p"},
  };
  for (const row& r : rows) {
    CAPTURE(std::string(r.location));
    auto next = v::resolve_location(base, r.location);
    REQUIRE(std::holds_alternative<v::fetch_url>(next));
    CHECK(std::get<v::fetch_url>(next).text() == r.expected);
  }
  SUBCASE("a Location that is not a URI reference is an error") {
    CHECK(error_of(v::resolve_location(base, "http://a b/")).find("invalid Location") !=
          std::string::npos);
  }
  SUBCASE("a redirect to another scheme is an error") {
    CHECK(error_of(v::resolve_location(base, "ftp://example.com/x")).find("http or https") !=
          std::string::npos);
  }
}

TEST_CASE("only 301, 302, 307 and 308 are followed") {
  for (unsigned s : {301U, 302U, 307U, 308U}) {
    CHECK(v::is_followed_redirect(s));
  }
  for (unsigned s : {200U, 300U, 303U, 304U, 305U, 306U, 404U, 421U}) {
    CHECK_FALSE(v::is_followed_redirect(s));
  }
}

TEST_CASE("the hop policy follows redirects like a CA") {
  const auto start = url("http://example.com/.well-known/pki-validation/a.txt");
  std::vector<v::hop> chain{{start.text(), 301}};

  SUBCASE("a final status ends the chain") {
    chain.back().status = 200;
    CHECK(v::next_hop(chain, start, 200, std::nullopt).what == v::hop_decision::kind::done);
    CHECK(v::next_hop(chain, start, 404, std::string("/x")).what == v::hop_decision::kind::done);
    CHECK(v::next_hop(chain, start, 303, std::string("/x")).what == v::hop_decision::kind::done);
  }
  SUBCASE("a redirect without Location is a final answer") {
    CHECK(v::next_hop(chain, start, 301, std::nullopt).what == v::hop_decision::kind::done);
  }
  SUBCASE("a redirect to an ACM validation host over https is followed") {
    const auto d = v::next_hop(
        chain, start, 301,
        std::string("https://validation.us-east-1.acm-validations.aws/1/.well-known/a.txt"));
    REQUIRE(d.what == v::hop_decision::kind::follow);
    CHECK(d.next.text() == "https://validation.us-east-1.acm-validations.aws/1/.well-known/a.txt");
  }
  SUBCASE("a redirect to the same host, on another scheme and port, is followed") {
    const auto d = v::next_hop(chain, start, 301, std::string("https://example.com:8443/a.txt"));
    REQUIRE(d.what == v::hop_decision::kind::follow);
    CHECK(d.next.text() == "https://example.com:8443/a.txt");
  }
  // Issue 18, finding 12: the checker runs inside the operator's network and followed any
  // Location, e.g. to the cloud metadata service; by default only the hops a validation needs
  // are followed.
  SUBCASE("a redirect anywhere else is refused, naming the URL and how to allow it") {
    const auto d =
        v::next_hop(chain, start, 302, std::string("http://169.254.169.254/latest/meta-data/"));
    REQUIRE(d.what == v::hop_decision::kind::fail);
    CHECK(d.reason ==
          "refused to follow the redirect to http://169.254.169.254/latest/meta-data/: only "
          "example.com itself and ACM validation hosts (https://*.acm-validations.aws) are "
          "followed; pass --allow 169.254.169.254 to follow it");
    for (const char* other :
         {"https://acm.example/1/a.txt", "http://validation.us-east-1.acm-validations.aws/a.txt",
          "https://acm-validations.aws/a.txt", "https://x.acm-validations.aws.evil.example/a",
          "https://www.example.com/a.txt", "http://localhost:8080/", "http://[::1]/",
          "http://10.0.0.1/"}) {
      CAPTURE(std::string(other));
      const auto refused = v::next_hop(chain, start, 301, std::string(other));
      CHECK(refused.what == v::hop_decision::kind::fail);
      CHECK(refused.reason.starts_with("refused to follow the redirect to "));
    }
  }
  SUBCASE("a redirect back to a URL already requested is a loop") {
    const auto d = v::next_hop(chain, start, 302, std::string("/.well-known/pki-validation/a.txt"));
    REQUIRE(d.what == v::hop_decision::kind::fail);
    CHECK(d.reason.find("redirect loop") != std::string::npos);
  }
  SUBCASE("a longer loop is found too") {
    const auto b = url("http://example.com/b");
    chain.push_back({b.text(), 302});
    const auto d = v::next_hop(chain, b, 302, std::string("/.well-known/pki-validation/a.txt"));
    REQUIRE(d.what == v::hop_decision::kind::fail);
    CHECK(d.reason.find("redirect loop") != std::string::npos);
  }
  SUBCASE("five redirects are followed, a sixth is too many") {
    for (int i = 1; i <= 4; ++i) {
      chain.push_back({"http://example.com/" + std::to_string(i), 301});
    }
    REQUIRE(chain.size() == 5);  // four redirects followed so far
    const auto current = url("http://example.com/4");
    CHECK(v::next_hop(chain, current, 301, std::string("/5")).what ==
          v::hop_decision::kind::follow);
    chain.push_back({"http://example.com/5", 301});
    const auto d = v::next_hop(chain, url("http://example.com/5"), 301, std::string("/6"));
    REQUIRE(d.what == v::hop_decision::kind::fail);
    CHECK(d.reason.find("too many redirects") != std::string::npos);
  }
  SUBCASE("an unusable Location fails with the reason") {
    const auto d = v::next_hop(chain, start, 301, std::string("mailto:x@example.com"));
    REQUIRE(d.what == v::hop_decision::kind::fail);
    CHECK(d.reason.find("http or https") != std::string::npos);
  }
}

TEST_CASE("ACM validation hosts are names under acm-validations.aws") {
  for (const char* host :
       {"validation.us-east-1.acm-validations.aws", "validation.eu-west-1.acm-validations.aws",
        "Validation.US-EAST-1.ACM-Validations.AWS", "validation.us-east-1.acm-validations.aws."}) {
    CAPTURE(std::string(host));
    CHECK(v::is_acm_validation_host(host));
  }
  for (const char* host :
       {"acm-validations.aws", ".acm-validations.aws", "evilacm-validations.aws",
        "validation.us-east-1.acm-validations.aws.evil.example", "acm-validations.aws.example",
        "validation.acm-validations.amazonaws.com", "169.254.169.254", ""}) {
    CAPTURE(std::string(host));
    CHECK_FALSE(v::is_acm_validation_host(host));
  }
}

TEST_CASE("--allow takes a host name or an IP address") {
  const auto ok = [](std::string_view in) {
    auto r = v::parse_allowed_host(in);
    REQUIRE_MESSAGE(r.index() == 0, std::string(in));
    return std::get<0>(r);
  };
  CHECK(ok("Internal.Example") == "internal.example");
  CHECK(ok("127.0.0.1") == "127.0.0.1");
  CHECK(ok("::1") == "::1");
  CHECK(ok("[0:0::1]") == "::1");
  for (std::string_view bad : {"", "localhost:8443", "http://a.example", "a.example/x", "[::1",
                               "[a.example]", "a b", ".example", "user@host"}) {
    CAPTURE(bad);
    const auto r = v::parse_allowed_host(bad);
    REQUIRE(r.index() == 1);
    CHECK(std::get<1>(r).starts_with("expected a host name or IP address"));
  }
}

TEST_CASE("the redirect policy: the domain, ACM validation hosts over https, --allow hosts") {
  const v::redirect_policy by_default;
  const auto refusal = [](const v::redirect_policy& p, std::string_view to) {
    return v::redirect_refusal(p, "example.com", url(to));
  };
  SUBCASE("followed by default") {
    for (std::string_view to :
         {"http://example.com/a", "https://example.com/a", "https://EXAMPLE.com.:8443/a",
          "https://validation.us-east-1.acm-validations.aws/1/.well-known/pki-validation/a.txt",
          "https://validation.ap-south-1.acm-validations.aws:8443/a"}) {
      CAPTURE(to);
      CHECK(refusal(by_default, to) == std::nullopt);
    }
  }
  SUBCASE("refused by default, each naming the URL and the --allow to pass") {
    struct row {
      std::string_view to;
      std::string_view allow;
    };
    for (const row& r : {row{"http://169.254.169.254/latest/meta-data/", "169.254.169.254"},
                         row{"http://validation.us-east-1.acm-validations.aws/a",
                             "validation.us-east-1.acm-validations.aws"},
                         row{"https://www.example.com/a", "www.example.com"},
                         row{"https://example.com.evil.example/a", "example.com.evil.example"},
                         row{"http://[::1]:8080/a", "::1"}, row{"http://127.0.0.1/", "127.0.0.1"},
                         row{"http://localhost/", "localhost"}}) {
      CAPTURE(r.to);
      const auto reason = refusal(by_default, r.to);
      REQUIRE(reason.has_value());
      CHECK(reason->starts_with("refused to follow the redirect to " + url(r.to).text() + ": "));
      CHECK(reason->ends_with("; pass --allow " + std::string(r.allow) + " to follow it"));
    }
  }
  SUBCASE("--allow adds exact hosts; IP addresses compare as addresses") {
    v::redirect_policy p;
    p.allowed = {"internal.example", "::1", "127.0.0.1"};
    CHECK(refusal(p, "http://internal.example:8080/a") == std::nullopt);
    CHECK(refusal(p, "http://INTERNAL.example./a") == std::nullopt);
    CHECK(refusal(p, "http://[0:0::1]/a") == std::nullopt);
    CHECK(refusal(p, "http://127.0.0.1:9/a") == std::nullopt);
    CHECK(refusal(p, "https://validation.us-east-1.acm-validations.aws/a") == std::nullopt);
    CHECK(*refusal(p, "http://a.internal.example/") ==
          "refused to follow the redirect to http://a.internal.example/: only example.com "
          "itself, ACM validation hosts (https://*.acm-validations.aws) and the --allow hosts "
          "are followed; pass --allow a.internal.example to follow it");
    CHECK(refusal(p, "http://127.0.0.2/").has_value());
  }
  SUBCASE("--same-host: only the domain, not even ACM") {
    v::redirect_policy p;
    p.same_host_only = true;
    CHECK(refusal(p, "https://example.com:8443/a") == std::nullopt);
    CHECK(*refusal(p, "https://validation.us-east-1.acm-validations.aws/a") ==
          "refused to follow the redirect to https://validation.us-east-1.acm-validations.aws/a: "
          "--same-host follows redirects only to example.com");
  }
  SUBCASE("the domain is RedirectFrom's host, not the host that redirected") {
    // example.com -> ACM -> somewhere else: refused, although ACM sent it.
    const auto acm = url("https://validation.us-east-1.acm-validations.aws/1/a.txt");
    std::vector<v::hop> chain{{"http://example.com/.well-known/pki-validation/a.txt", 301},
                              {acm.text(), 302}};
    auto d = v::next_hop(chain, acm, 302, std::string("http://internal.example/a"), by_default);
    REQUIRE(d.what == v::hop_decision::kind::fail);
    CHECK(d.reason.find("only example.com itself") != std::string::npos);
    // ...and back to the domain is followed.
    d = v::next_hop(chain, acm, 302, std::string("http://example.com/b"), by_default);
    CHECK(d.what == v::hop_decision::kind::follow);
  }
}

TEST_CASE("the status chain reads left to right") {
  CHECK(v::chain_text({}) == "");
  CHECK(v::chain_text({{"a", 200}}) == "200");
  CHECK(v::chain_text({{"a", 301}, {"b", 302}, {"c", 200}}) == "301 -> 302 -> 200");
  CHECK(v::chain_text({{"a", 301}, {"b", std::nullopt}}) == "301 -> no answer");
}

TEST_CASE("bodies are compared byte for byte") {
  CHECK_FALSE(v::body_mismatch("token", "token"));
  CHECK_FALSE(v::body_mismatch("", ""));
  SUBCASE("different content: both lengths and the first differing offset") {
    const auto m = v::body_mismatch("token-A", "token-B");
    REQUIRE(m);
    CHECK(m->find("got 7 bytes, expected 7") != std::string::npos);
    CHECK(m->find("offset 6") != std::string::npos);
  }
  SUBCASE("nothing is trimmed: a trailing newline is a difference") {
    const auto m = v::body_mismatch("token\n", "token");
    REQUIRE(m);
    CHECK(m->find("got 6 bytes, expected 5") != std::string::npos);
    CHECK(m->find("offset 5") != std::string::npos);
  }
  SUBCASE("an empty body") {
    const auto m = v::body_mismatch("", "token");
    REQUIRE(m);
    CHECK(m->find("offset 0") != std::string::npos);
    CHECK(m->find("empty body") != std::string::npos);
  }
  SUBCASE("what was received is shown, made printable") {
    const auto m = v::body_mismatch("{\"backend\": \"origin\"}\r\n\x1b[31m", "x");
    REQUIRE(m);
    CHECK(m->find("{\"backend\": \"origin\"}??") != std::string::npos);
    CHECK(m->find('\x1b') == std::string::npos);
  }
}

TEST_CASE("a failing status is explained") {
  SUBCASE("421 from CloudFront") {
    CHECK(v::status_failure(421, "Status", "status 421\n") ==
          "421 Misdirected Request: CloudFront refused the Host for this SNI; use plain http:// "
          "for cloudfront");
  }
  SUBCASE("the proxy's own 5xx text is quoted") {
    CHECK(v::status_failure(502, "Bad Gateway",
                            "wkproxy: upstream refused the connection: cloudfront 127.0.0.1:9: "
                            "Connection refused\n") ==
          "502 Bad Gateway: wkproxy: upstream refused the connection: cloudfront 127.0.0.1:9: "
          "Connection refused");
  }
  SUBCASE("400 and 403 hint at a rejected Host") {
    CHECK(v::status_failure(400, "", "bad\n").find("Host rejected") != std::string::npos);
    CHECK(v::status_failure(403, "",
                            "<HTML><HEAD><TITLE>ERROR: The request could not be "
                            "satisfied</TITLE></HEAD></HTML>")
              .find("403 Forbidden: ERROR: The request could not be satisfied (Host rejected") !=
          std::string::npos);
  }
  SUBCASE("404 says the file is not there") {
    const auto r = v::status_failure(404, "Not Found", "");
    CHECK(r.starts_with("404 Not Found (no validation file there"));
  }
  SUBCASE("redirects that are not followed") {
    CHECK(v::status_failure(301, "", "") == "301 Moved Permanently without a Location header");
    CHECK(v::status_failure(303, "", "").find("only 301, 302, 307 and 308") != std::string::npos);
  }
  SUBCASE("an unknown status keeps the server's phrase") {
    CHECK(v::status_failure(555, "Odd", "") == "555 Odd");
  }
}

TEST_CASE("the first line of a body is short and printable") {
  CHECK(v::body_first_line("\r\n  hello world  \r\nsecond") == "hello world");
  CHECK(v::body_first_line("") == "");
  CHECK(v::body_first_line("<html><title>\n  Not\tFound </title>") == "Not Found");
  CHECK(v::body_first_line(std::string(300, 'a'), 10) == "aaaaaaaaaa...");
  CHECK(v::body_first_line("a\x01\xff") == "a??");
}

TEST_CASE("check arguments") {
  SUBCASE("defaults") {
    const auto p = parse({"-c", "wk.yaml"});
    REQUIRE(p.options);
    CHECK(p.options->config_path == "wk.yaml");
    CHECK(p.options->mode == v::first_hop::listener);
    CHECK(p.options->timeout.count() == 10'000);
    CHECK_FALSE(p.options->json);
  }
  SUBCASE("every option") {
    const auto p = parse({"--config", "wk.yaml", "--via", "[::1]:8080", "--ca-file", "ca.pem",
                          "--json", "--timeout", "250ms"});
    REQUIRE(p.options);
    CHECK(p.options->mode == v::first_hop::via);
    CHECK(p.options->via.host == "::1");
    CHECK(p.options->via.port == 8080);
    CHECK(p.options->ca_file == "ca.pem");
    CHECK(p.options->json);
    CHECK(p.options->timeout.count() == 250);
  }
  SUBCASE("--dns") {
    const auto p = parse({"--dns", "-c", "wk.yaml"});
    REQUIRE(p.options);
    CHECK(p.options->mode == v::first_hop::dns);
  }
  SUBCASE("help") {
    CHECK(parse({"-c", "x", "--help"}).help);
  }
  SUBCASE("errors") {
    CHECK(parse({}).error.find("-c FILE") != std::string::npos);
    CHECK(parse({"-c"}).error.find("needs a value") != std::string::npos);
    CHECK(parse({"-c", "x", "--via", "127.0.0.1:1", "--dns"}).error.find("together") !=
          std::string::npos);
    CHECK(parse({"-c", "x", "--via", "localhost"}).error.find("--via") != std::string::npos);
    CHECK(parse({"-c", "x", "--timeout", "soon"}).error.find("--timeout") != std::string::npos);
    CHECK(parse({"-c", "x", "--timeout", "0s"}).error.find("--timeout") != std::string::npos);
    CHECK(parse({"-c", "x", "--bogus"}).error.find("unknown argument") != std::string::npos);
    CHECK(parse({"-c", "x", "--allow"}).error == "--allow needs a value");
    CHECK(parse({"-c", "x", "--allow", "a:1"}).error.starts_with("--allow: expected a host"));
    CHECK(parse({"-c", "x", "--same-host", "--allow", "a"}).error ==
          "--same-host and --allow cannot be used together");
  }
  SUBCASE("where redirects may go") {
    auto p = parse({"-c", "x"});
    REQUIRE(p.options);
    CHECK_FALSE(p.options->redirects.same_host_only);
    CHECK(p.options->redirects.allowed.empty());
    p = parse({"-c", "x", "--allow", "Internal.Example", "--allow", "[::1]"});
    REQUIRE(p.options);
    CHECK(p.options->redirects.allowed == std::vector<std::string>{"internal.example", "::1"});
    p = parse({"-c", "x", "--same-host"});
    REQUIRE(p.options);
    CHECK(p.options->redirects.same_host_only);
  }
}

TEST_CASE("--via addresses") {
  struct row {
    const char* in;
    const char* host;
    std::uint16_t port;
    const char* text;
  };
  const row ok[] = {{"127.0.0.1:8080", "127.0.0.1", 8080, "127.0.0.1:8080"},
                    {"LocalHost:80", "localhost", 80, "localhost:80"},
                    {"[::1]:443", "::1", 443, "[::1]:443"}};
  for (const row& r : ok) {
    CAPTURE(std::string(r.in));
    auto hp = v::parse_host_port(r.in);
    REQUIRE(std::holds_alternative<v::host_port>(hp));
    CHECK(std::get<v::host_port>(hp).host == r.host);
    CHECK(std::get<v::host_port>(hp).port == r.port);
    CHECK(std::get<v::host_port>(hp).text() == r.text);
  }
  for (const char* bad : {"", ":80", "host", "host:0", "host:70000", "::1:80", "[::1]", "[x]:1"}) {
    CAPTURE(std::string(bad));
    CHECK(std::holds_alternative<std::string>(v::parse_host_port(bad)));
  }
}

TEST_CASE("the default first hop is the config's first plain-HTTP listener") {
  const auto L = [](std::string address, std::string host, std::uint16_t port) {
    wk::config::listener l;
    l.address = std::move(address);
    l.host = std::move(host);
    l.port = port;
    return l;
  };
  const auto target = [](const std::vector<wk::config::listener>& l) {
    return v::listener_target(l);
  };
  SUBCASE("a loopback listener as written") {
    auto t = target({L("127.0.0.1:8080", "127.0.0.1", 8080), L("[::1]:81", "::1", 81)});
    REQUIRE(std::holds_alternative<v::host_port>(t));
    CHECK(std::get<v::host_port>(t).text() == "127.0.0.1:8080");
  }
  SUBCASE("the any-address means loopback") {
    auto t4 = target({L(":80", "0.0.0.0", 80)});
    REQUIRE(std::holds_alternative<v::host_port>(t4));
    CHECK(std::get<v::host_port>(t4).text() == "127.0.0.1:80");
    auto t6 = target({L("[::]:80", "::", 80)});
    REQUIRE(std::holds_alternative<v::host_port>(t6));
    CHECK(std::get<v::host_port>(t6).text() == "[::1]:80");
  }
  SUBCASE("port 0 cannot be checked by default") {
    auto t = target({L("127.0.0.1:0", "127.0.0.1", 0)});
    REQUIRE(std::holds_alternative<std::string>(t));
    CHECK(std::get<std::string>(t).find("--via") != std::string::npos);
  }
  SUBCASE("TLS, passthrough and PROXY-protocol listeners are skipped") {
    auto tls = L("127.0.0.1:443", "127.0.0.1", 443);
    tls.mode = wk::config::listener_mode::tls;
    auto pass = L("127.0.0.1:444", "127.0.0.1", 444);
    pass.mode = wk::config::listener_mode::passthrough;
    auto behind_lb = L("127.0.0.1:81", "127.0.0.1", 81);
    behind_lb.accept_proxy_from.emplace_back();
    auto t = target({tls, pass, behind_lb, L("127.0.0.1:82", "127.0.0.1", 82)});
    REQUIRE(std::holds_alternative<v::host_port>(t));
    CHECK(std::get<v::host_port>(t).text() == "127.0.0.1:82");
    CHECK(std::holds_alternative<std::string>(target({tls, pass})));
  }
  SUBCASE("no listener") {
    CHECK(std::holds_alternative<std::string>(target({})));
  }
}

TEST_CASE("results as an aligned table with a summary") {
  std::vector<v::token_result> results(2);
  results[0].domain = "example.com";
  results[0].file = "a.txt";
  results[0].pass = true;
  results[0].chain = {{"http://example.com/a.txt", 301}, {"https://acm/a.txt", 200}};
  results[1].domain = "www.example.com";
  results[1].file = "bb.txt";
  results[1].chain = {{"http://www.example.com/bb.txt", 421}};
  results[1].reason = "421 Misdirected Request: ...";
  results[1].addresses = {"192.0.2.1", "2001:db8::1"};
  const std::string table = v::format_table(results);
  CHECK(table == "RESULT  DOMAIN           FILE    CHAIN       DETAIL\n"
                 "PASS    example.com      a.txt   301 -> 200\n"
                 "FAIL    www.example.com  bb.txt  421         421 Misdirected Request: ...; "
                 "DNS: 192.0.2.1, 2001:db8::1\n"
                 "What each reason means and what to do: docs/onboarding.md, "
                 "\"3. Troubleshooting\"\n"
                 "1 passed, 1 failed\n");
  CHECK(v::format_table({}) == "RESULT  DOMAIN  FILE  CHAIN  DETAIL\n0 passed, 0 failed\n");
}

TEST_CASE("results as JSON") {
  std::vector<v::token_result> results(2);
  results[0].domain = "example.com";
  results[0].file = "a.txt";
  results[0].redirect_from = "http://example.com/.well-known/pki-validation/a.txt";
  results[0].redirect_to = "https://acm.example/1/a.txt";
  results[0].pass = true;
  results[0].chain = {{results[0].redirect_from, 200}};
  results[1].domain = "example.com";
  results[1].file = "b.txt";
  results[1].chain = {{"http://example.com/b.txt", std::nullopt}};
  results[1].reason = "nothing is listening on 127.0.0.1:8080: connection refused";
  results[1].addresses = {"127.0.0.1"};
  const auto doc = boost::json::parse(v::format_json(results)).as_object();
  CHECK(doc.at("passed").as_int64() == 1);
  CHECK(doc.at("failed").as_int64() == 1);
  const auto& list = doc.at("results").as_array();
  REQUIRE(list.size() == 2);
  const auto& a = list[0].as_object();
  CHECK(a.at("domain").as_string() == "example.com");
  CHECK(a.at("file").as_string() == "a.txt");
  CHECK(a.at("redirect_from").as_string() == results[0].redirect_from);
  CHECK(a.at("redirect_to").as_string() == results[0].redirect_to);
  CHECK(a.at("pass").as_bool());
  CHECK(a.at("reason").as_string() == "");
  CHECK(a.at("chain").as_array()[0].as_object().at("status").to_number<unsigned>() == 200);
  CHECK_FALSE(a.contains("addresses"));
  const auto& b = list[1].as_object();
  CHECK_FALSE(b.at("pass").as_bool());
  CHECK(b.at("chain").as_array()[0].as_object().at("status").is_null());
  CHECK(b.at("addresses").as_array().size() == 1);
}
