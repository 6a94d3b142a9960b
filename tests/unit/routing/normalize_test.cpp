#include "routing/normalize.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

namespace routing = wk::routing;

namespace {

struct dot_row {
  std::string_view input;
  std::string_view expected;
};

struct ok_row {
  const char* name;
  std::string_view raw;
  std::string_view method;
  routing::target_form form;
  std::string_view authority;
  std::string_view raw_path;
  std::string_view path;
  std::string_view query;
  bool has_query;
  bool slash_ambiguous;
};

struct bad_row {
  const char* name;
  std::string_view raw;
  std::string_view method;
  std::string_view reason;  // empty: any reason
};

}  // namespace

TEST_CASE("remove_dot_segments follows RFC 3986 section 5.2.4") {
  SUBCASE("the RFC's own examples") {
    const dot_row rows[] = {
        {"/a/b/c/./../../g", "/a/g"},
        {"mid/content=5/../6", "mid/6"},
    };
    for (const auto& row : rows) {
      CAPTURE(row.input);
      CHECK(routing::remove_dot_segments(row.input) == row.expected);
    }
  }

  SUBCASE("the abnormal examples of section 5.4.2, as merged paths") {
    const dot_row rows[] = {
        {"/a/b/c/../../../g", "/g"},     // "../../../g"
        {"/a/b/c/../../../../g", "/g"},  // "../../../../g"
        {"/./g", "/g"},
        {"/../g", "/g"},
        {"/a/b/c/g.", "/a/b/c/g."},
        {"/a/b/c/.g", "/a/b/c/.g"},
        {"/a/b/c/g..", "/a/b/c/g.."},
        {"/a/b/c/..g", "/a/b/c/..g"},
        {"/a/b/c/./../g", "/a/b/g"},
        {"/a/b/c/./g/.", "/a/b/c/g/"},
        {"/a/b/c/g/./h", "/a/b/c/g/h"},
        {"/a/b/c/g/../h", "/a/b/c/h"},
        {"/a/b/c/g;x=1/./y", "/a/b/c/g;x=1/y"},
        {"/a/b/c/g;x=1/../y", "/a/b/c/y"},
    };
    for (const auto& row : rows) {
      CAPTURE(row.input);
      CHECK(routing::remove_dot_segments(row.input) == row.expected);
    }
  }

  SUBCASE("edge cases of each rule") {
    const dot_row rows[] = {
        {"", ""},
        {"/", "/"},
        {"/..", "/"},
        {"/.", "/"},
        {"/a/..", "/"},
        {"/a/.", "/a/"},
        {"/a/../", "/"},
        {"/a/b/..", "/a/"},
        {".", ""},
        {"..", ""},
        {"../a", "a"},
        {"./a", "a"},
        {"../../a/b", "a/b"},
        {"/../../..", "/"},
        {"/a//../b", "/a/b"},
        {"//a", "//a"},
        {"/a/...", "/a/..."},
        {"/.well-known/pki-validation/../../admin", "/admin"},
    };
    for (const auto& row : rows) {
      CAPTURE(row.input);
      CHECK(routing::remove_dot_segments(row.input) == row.expected);
    }
  }
}

TEST_CASE("normalize_target accepts the request-target forms and canonicalizes the path") {
  using routing::target_form;
  const ok_row rows[] = {
      // name, raw, method, form, authority, raw_path, path, query, has_query, slash_ambiguous
      {"plain origin-form", "/index.html", "GET", target_form::origin, "", "/index.html",
       "/index.html", "", false, false},
      {"root", "/", "GET", target_form::origin, "", "/", "/", "", false, false},
      {"query kept with upper-cased hex, not decoded", "/a?x=%2f%41&y", "GET", target_form::origin,
       "", "/a", "/a", "x=%2F%41&y", true, false},
      {"empty query", "/a?", "GET", target_form::origin, "", "/a", "/a", "", true, false},
      {"unreserved escapes decoded", "/%41%7a%2D%2e%5F%7E", "GET", target_form::origin, "",
       "/%41%7a%2D%2e%5F%7E", "/Az-._~", "", false, false},
      {"other escapes upper-cased", "/a%3bb%20c%c3%a9", "GET", target_form::origin, "",
       "/a%3bb%20c%c3%a9", "/a%3Bb%20c%C3%A9", "", false, false},
      {"dot segments removed", "/a/./b/../c", "GET", target_form::origin, "", "/a/./b/../c", "/a/c",
       "", false, false},
      {"encoded dot segments removed", "/a/%2e%2E/b", "GET", target_form::origin, "", "/a/%2e%2E/b",
       "/b", "", false, false},
      {"dot segments above the root", "/../../x", "GET", target_form::origin, "", "/../../x", "/x",
       "", false, false},
      {"encoded slash is ambiguous", "/a%2fb", "GET", target_form::origin, "", "/a%2fb", "/a%2Fb",
       "", false, true},
      {"upper-case encoded slash is ambiguous", "/a%2Fb", "GET", target_form::origin, "", "/a%2Fb",
       "/a%2Fb", "", false, true},
      {"encoded backslash is ambiguous", "/a%5cb", "GET", target_form::origin, "", "/a%5cb",
       "/a%5Cb", "", false, true},
      {"backslash is tolerated but ambiguous", "/a\\b", "GET", target_form::origin, "", "/a\\b",
       "/a\\b", "", false, true},
      {"empty segment is ambiguous", "/a//b", "GET", target_form::origin, "", "/a//b", "/a//b", "",
       false, true},
      {"leading double slash is ambiguous", "//a", "GET", target_form::origin, "", "//a", "//a", "",
       false, true},
      {"slashes in the query are not ambiguous", "/a?b=//%2f\\", "GET", target_form::origin, "",
       "/a", "/a", "b=//%2F\\", true, false},
      {"raw UTF-8 and non-RFC characters are tolerated", "/\xc3\xa9\"<>{}|^`", "GET",
       target_form::origin, "", "/\xc3\xa9\"<>{}|^`", "/\xc3\xa9\"<>{}|^`", "", false, false},
      {"asterisk-form with OPTIONS", "*", "OPTIONS", target_form::asterisk, "", "/", "/", "", false,
       false},
      {"absolute-form", "http://Example.COM:8080/A/./b?q=%2f", "GET", target_form::absolute,
       "example.com:8080", "/A/./b", "/A/b", "q=%2F", true, false},
      {"absolute-form with an upper-case https scheme", "HTTPS://example.com/x", "GET",
       target_form::absolute, "example.com", "/x", "/x", "", false, false},
      {"absolute-form with an empty path", "http://example.com", "GET", target_form::absolute,
       "example.com", "/", "/", "", false, false},
      {"absolute-form with an empty path and a query", "http://example.com?a=1", "GET",
       target_form::absolute, "example.com", "/", "/", "a=1", true, false},
      {"absolute-form with an IPv6 literal", "http://[::1]:80/", "GET", target_form::absolute,
       "[::1]:80", "/", "/", "", false, false},
      {"authority-form with CONNECT", "Example.com:443", "CONNECT", target_form::authority,
       "example.com:443", "/", "/", "", false, false},
  };
  for (const auto& row : rows) {
    SUBCASE(row.name) {
      const auto r = routing::normalize_target(row.raw, row.method);
      REQUIRE(r.status == routing::target_status::ok);
      CHECK(r.reason.empty());
      CHECK(r.value.form == row.form);
      CHECK(r.value.authority == row.authority);
      CHECK(r.value.raw_path == row.raw_path);
      CHECK(r.value.path == row.path);
      CHECK(r.value.query == row.query);
      CHECK(r.value.has_query == row.has_query);
      CHECK(r.value.slash_ambiguous == row.slash_ambiguous);
    }
  }
}

TEST_CASE("normalize_target rejects targets that are not valid request-targets") {
  const bad_row rows[] = {
      {"empty target", "", "GET", ""},
      {"lone percent", "/a%", "GET", "invalid percent-encoding"},
      {"one hex digit", "/a%4", "GET", "invalid percent-encoding"},
      {"one hex digit mid-path", "/a%4/b", "GET", "invalid percent-encoding"},
      {"non-hex digits", "/a%zz", "GET", "invalid percent-encoding"},
      {"invalid escape in the query", "/a?x=%g1", "GET", "invalid percent-encoding"},
      {"percent at the end of the query", "/a?x=100%", "GET", "invalid percent-encoding"},
      {"invalid escape in an absolute-form path", "http://example.com/%", "GET",
       "invalid percent-encoding"},
      {"fragment", "/a#b", "GET", "fragment in request target"},
      {"fragment in the query", "/a?b#c", "GET", "fragment in request target"},
      {"space", "/a b", "GET", "invalid character in request target"},
      {"tab", "/a\tb", "GET", "invalid character in request target"},
      {"NUL", std::string_view("/a\0b", 4), "GET", "invalid character in request target"},
      {"DEL", "/a\x7f", "GET", "invalid character in request target"},
      {"CR", "/a\r", "GET", "invalid character in request target"},
      {"asterisk-form with GET", "*", "GET", ""},
      {"asterisk followed by more", "*/a", "OPTIONS", ""},
      {"relative path", "a/b", "GET", ""},
      {"authority-form without CONNECT", "example.com:443", "GET", ""},
      {"CONNECT with origin-form", "/a", "CONNECT", ""},
      {"CONNECT without a port", "example.com", "CONNECT", ""},
      {"other scheme", "ftp://example.com/", "GET", ""},
      {"scheme without slashes", "http:example.com/", "GET", ""},
      {"userinfo", "http://user@example.com/", "GET", "userinfo in request target"},
      {"userinfo with password", "http://user:pw@example.com/", "GET",
       "userinfo in request target"},
      {"empty host", "http:///a", "GET", ""},
      {"empty host with a port", "http://:80/a", "GET", ""},
      {"invalid port", "http://example.com:99999/", "GET", ""},
      {"invalid host characters", "http://exa%6dple.com/", "GET", ""},
  };
  for (const auto& row : rows) {
    SUBCASE(row.name) {
      const auto r = routing::normalize_target(row.raw, row.method);
      CHECK(r.status == routing::target_status::bad_target);
      CHECK_FALSE(r.reason.empty());
      if (!row.reason.empty()) {
        CHECK(r.reason == row.reason);
      }
    }
  }
}

TEST_CASE("normalize_target is idempotent on its own normalized path") {
  const std::string_view targets[] = {"/a/%2e%2E/b%41%3b", "/x/./y/../z?q=%aa", "/%7e%2F"};
  for (const auto raw : targets) {
    CAPTURE(raw);
    const auto once = routing::normalize_target(raw, "GET");
    REQUIRE(once.status == routing::target_status::ok);
    const auto twice = routing::normalize_target(once.value.path, "GET");
    REQUIRE(twice.status == routing::target_status::ok);
    CHECK(twice.value.path == once.value.path);
  }
}
