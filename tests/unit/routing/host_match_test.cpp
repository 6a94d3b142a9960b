#include "routing/host_match.hpp"

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace routing = wk::routing;

namespace {

struct host_row {
  std::string_view value;
  std::optional<std::string_view> expected;  // nullopt: invalid
};

struct allow_row {
  std::string_view host;
  bool allowed;
};

void check_hosts(const std::vector<host_row>& rows) {
  for (const auto& row : rows) {
    CAPTURE(row.value);
    const auto got = routing::normalize_host(row.value);
    REQUIRE(got.has_value() == row.expected.has_value());
    if (row.expected) {
      CHECK(*got == *row.expected);
    }
  }
}

void check_allows(const routing::host_allow_list& list, const std::vector<allow_row>& rows) {
  for (const auto& row : rows) {
    CAPTURE(row.host);
    CHECK(list.allows(row.host) == row.allowed);
  }
}

}  // namespace

TEST_CASE("normalize_host canonicalizes valid Host values") {
  SUBCASE("names are lower-cased") {
    check_hosts({{"example.com", "example.com"},
                 {"Example.COM", "example.com"},
                 {"WWW.EXAMPLE.COM", "www.example.com"},
                 {"localhost", "localhost"},
                 {"a-b_c.example", "a-b_c.example"},
                 {"127.0.0.1", "127.0.0.1"}});
  }
  SUBCASE("the port is removed when it is 1-5 digits and at most 65535") {
    check_hosts({{"example.com:80", "example.com"},
                 {"example.com:8080", "example.com"},
                 {"example.com:65535", "example.com"},
                 {"example.com:00080", "example.com"},
                 {"EXAMPLE.com:443", "example.com"}});
  }
  SUBCASE("one trailing dot is removed") {
    check_hosts({{"example.com.", "example.com"}, {"example.com.:80", "example.com"}});
  }
  SUBCASE("IPv6 literals lose their brackets") {
    check_hosts({{"[::1]", "::1"},
                 {"[::1]:8080", "::1"},
                 {"[2001:DB8::1]", "2001:db8::1"},
                 {"[1:2:3:4:5:6:7:8]", "1:2:3:4:5:6:7:8"},
                 {"[::]", "::"},
                 {"[1::]", "1::"},
                 {"[::ffff:192.0.2.1]", "::ffff:192.0.2.1"},
                 {"[1:2:3:4:5:6:1.2.3.4]", "1:2:3:4:5:6:1.2.3.4"}});
  }
}

TEST_CASE("normalize_host rejects values that are not a host with an optional port") {
  SUBCASE("empty or malformed names") {
    check_hosts({{"", std::nullopt},
                 {".", std::nullopt},
                 {"..", std::nullopt},
                 {"example.com..", std::nullopt},
                 {"a..b", std::nullopt},
                 {".example.com", std::nullopt},
                 {":80", std::nullopt}});
  }
  SUBCASE("characters outside letters, digits, '-', '.', '_'") {
    check_hosts({{"exa mple.com", std::nullopt},
                 {" example.com", std::nullopt},
                 {"user@example.com", std::nullopt},
                 {"example.com/path", std::nullopt},
                 {"example.com\\x", std::nullopt},
                 {"exa%6dple.com", std::nullopt},
                 {"ex\xc3\xa4mple.com", std::nullopt},
                 {std::string_view("example.com\0", 12), std::nullopt}});
  }
  SUBCASE("bad ports") {
    check_hosts({{"example.com:", std::nullopt},
                 {"example.com:65536", std::nullopt},
                 {"example.com:123456", std::nullopt},
                 {"example.com:8o", std::nullopt},
                 {"example.com:80:80", std::nullopt},
                 {"example.com:-1", std::nullopt}});
  }
  SUBCASE("bad IPv6 literals") {
    check_hosts({{"[]", std::nullopt},
                 {"[::1", std::nullopt},
                 {"::1", std::nullopt},
                 {"[::1]x", std::nullopt},
                 {"[::1]:", std::nullopt},
                 {"[:::]", std::nullopt},
                 {"[1::2::3]", std::nullopt},
                 {"[1:2:3:4:5:6:7]", std::nullopt},
                 {"[1:2:3:4:5:6:7:8:9]", std::nullopt},
                 {"[1:2:3:4:5:6:7::8]", std::nullopt},
                 {"[12345::]", std::nullopt},
                 {"[g::1]", std::nullopt},
                 {"[1::2:]", std::nullopt},
                 {"[:1::2]", std::nullopt},
                 {"[::1.2.3]", std::nullopt},
                 {"[::1.2.3.256]", std::nullopt},
                 {"[1.2.3.4]", std::nullopt},
                 {"[fe80::1%25eth0]", std::nullopt},
                 {"[v1.x]", std::nullopt}});
  }
}

TEST_CASE("host_allow_list matches exact names, one-label wildcards and '*'") {
  SUBCASE("exact names are case-insensitive patterns") {
    const routing::host_allow_list list({"Example.com", "www.example.com"});
    check_allows(list, {{"example.com", true},
                        {"www.example.com", true},
                        {"a.example.com", false},
                        {"example.org", false},
                        {"xexample.com", false},
                        {"", false}});
  }
  SUBCASE("a trailing dot on a pattern is ignored like on a Host") {
    const routing::host_allow_list list({"example.com."});
    check_allows(list, {{"example.com", true}});
  }
  SUBCASE("'*.example.com' matches exactly one more label") {
    const routing::host_allow_list list({"*.Example.com"});
    check_allows(list, {{"a.example.com", true},
                        {"www.example.com", true},
                        {"a.b.example.com", false},
                        {"example.com", false},
                        {".example.com", false},
                        {"aexample.com", false},
                        {"a.example.org", false}});
  }
  SUBCASE("'*' matches any host but not the absence of one") {
    const routing::host_allow_list list({"*"});
    check_allows(list, {{"anything.example", true}, {"::1", true}, {"", false}});
  }
  SUBCASE("an empty list allows nothing") {
    const routing::host_allow_list list;
    check_allows(list, {{"example.com", false}, {"", false}});
    const routing::host_allow_list from_empty(std::vector<std::string>{});
    check_allows(from_empty, {{"example.com", false}});
  }
  SUBCASE("mixed patterns") {
    const routing::host_allow_list list({"b.example", "*.a.example", "c.example"});
    check_allows(list, {{"b.example", true},
                        {"c.example", true},
                        {"x.a.example", true},
                        {"a.example", false},
                        {"d.example", false}});
  }
}
