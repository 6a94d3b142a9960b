#include "wire/request_head.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using wk::wire::check_transfer_encoding;
using wk::wire::coding_verdict;
using wk::wire::head_limits;
using wk::wire::head_scan;
using wk::wire::head_status;
using wk::wire::request_head_scanner;

namespace {

head_scan scan_all(std::string_view bytes, head_limits limits = {}) {
  request_head_scanner s{limits};
  return s.scan(bytes);
}

// Feeds the bytes one at a time, as a slow client would send them.
head_scan scan_bytewise(std::string_view bytes, head_limits limits = {}) {
  request_head_scanner s{limits};
  head_scan r;
  for (std::size_t n = 1; n <= bytes.size(); ++n) {
    r = s.scan(bytes.substr(0, n));
    if (r.status != head_status::incomplete) {
      return r;
    }
  }
  return r;
}

}  // namespace

TEST_CASE("a well-formed head is complete at its final empty line") {
  std::string head = "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Y:  z \t\r\n\r\n";
  for (auto r : {scan_all(head + "BODY"), scan_bytewise(head)}) {
    CHECK(r.status == head_status::complete);
    CHECK(r.skip == 0);
    CHECK(r.length == head.size());
  }
  CHECK(scan_all(head.substr(0, head.size() - 1)).status == head_status::incomplete);
  CHECK(scan_all("").status == head_status::incomplete);
}

TEST_CASE("empty lines before the request line are skipped, a few at most") {
  auto r = scan_all("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK(r.status == head_status::complete);
  CHECK(r.skip == 4);
  CHECK(r.length == 27);
  CHECK(scan_bytewise("\r\nGET / HTTP/1.0\r\n\r\n").status == head_status::complete);
  CHECK(scan_all("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n").status == head_status::invalid);
  CHECK(scan_all("\nGET / HTTP/1.1\r\n\r\n").status == head_status::invalid);
  CHECK(scan_all("\rGET / HTTP/1.1\r\n\r\n").status == head_status::invalid);
}

TEST_CASE("request lines") {
  struct row {
    const char* head;
    head_status expected;
  };
  const std::vector<row> rows = {
      {"GET / HTTP/1.0\r\n\r\n", head_status::complete},
      {"OPTIONS * HTTP/1.1\r\n\r\n", head_status::complete},
      {"get /x HTTP/1.1\r\n\r\n", head_status::complete},  // methods are case-sensitive tokens
      {"GET http://a/b HTTP/1.1\r\n\r\n", head_status::complete},
      {"GET  / HTTP/1.1\r\n\r\n", head_status::invalid},
      {"GET / HTTP/1.1 \r\n\r\n", head_status::invalid},
      {"GET /  HTTP/1.1\r\n\r\n", head_status::invalid},
      {"GET\t/ HTTP/1.1\r\n\r\n", head_status::invalid},
      {" GET / HTTP/1.1\r\n\r\n", head_status::invalid},
      {"GET /\r\n\r\n", head_status::invalid},  // HTTP/0.9
      {"GET / HTTP/1.1x\r\n\r\n", head_status::invalid},
      {"GET / http/1.1\r\n\r\n", head_status::invalid},
      {"GET / HTTP/11\r\n\r\n", head_status::invalid},
      {"GET / HTTP/1.2\r\n\r\n", head_status::bad_version},
      {"GET / HTTP/2.0\r\n\r\n", head_status::bad_version},
      {"GET / HTTP/0.9\r\n\r\n", head_status::bad_version},
      {"GE(T / HTTP/1.1\r\n\r\n", head_status::invalid},
      {"GET /a\x01 HTTP/1.1\r\n\r\n", head_status::invalid},
      {"GET /a\x7f HTTP/1.1\r\n\r\n", head_status::invalid},
      {"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", head_status::invalid},
      {"GET / HTTP/1.1\n\r\n", head_status::invalid},
      {"GET / HTTP/1.1\r\r\n\r\n", head_status::invalid},
      {"GET /\r HTTP/1.1\r\n\r\n", head_status::invalid},
  };
  for (const auto& r : rows) {
    CAPTURE(r.head);
    CHECK(scan_all(r.head).status == r.expected);
    CHECK(scan_bytewise(r.head).status == r.expected);
  }
}

TEST_CASE("field lines") {
  struct row {
    std::string field;
    head_status expected;
  };
  const std::vector<row> rows = {
      {"X: y", head_status::complete},
      {"X:y", head_status::complete},
      {"X:", head_status::complete},
      {"X: a\tb", head_status::complete},
      {"X: caf\xc3\xa9", head_status::complete},  // obs-text is allowed in values
      {"X : y", head_status::invalid},
      {"X\t: y", head_status::invalid},
      {": y", head_status::invalid},
      {"X[1]: y", head_status::invalid},
      {"X y", head_status::invalid},
      {" X: y", head_status::invalid},
      {std::string("X: a\0b", 6), head_status::invalid},
      {"X: a\x01z", head_status::invalid},
      {"X: a\x7fz", head_status::invalid},
      {"X: a\rb", head_status::invalid},
      {"X: y\nZ: w", head_status::invalid},
  };
  for (const auto& r : rows) {
    std::string head = "GET / HTTP/1.1\r\nHost: a\r\n" + r.field + "\r\n\r\n";
    CAPTURE(r.field);
    CHECK(scan_all(head).status == r.expected);
    CHECK(scan_bytewise(head).status == r.expected);
  }
  SUBCASE("obs-fold is rejected, not unfolded") {
    CHECK(scan_all("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n").status == head_status::invalid);
    CHECK(scan_all("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n").status == head_status::invalid);
  }
}

TEST_CASE("limits: target 414, head bytes and field count 431") {
  head_limits limits;
  limits.header_bytes = 200;
  limits.target_bytes = 50;
  limits.field_count = 3;
  std::string target(51, 'a');
  CHECK(scan_all("GET /" + target + " HTTP/1.1\r\n\r\n", limits).status ==
        head_status::target_too_long);
  // Without the end of the line in sight the partial line is judged by its length.
  CHECK(scan_all("GET /" + std::string(200, 'a'), limits).status == head_status::target_too_long);
  CHECK(scan_all("GET /" + std::string(40, 'a'), limits).status == head_status::incomplete);
  CHECK(scan_all("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits).status ==
        head_status::complete);
  CHECK(scan_all("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", limits).status ==
        head_status::too_large);
  CHECK(scan_all("GET / HTTP/1.1\r\nA: " + std::string(200, 'v') + "\r\n\r\n", limits).status ==
        head_status::too_large);
  CHECK(scan_bytewise("GET / HTTP/1.1\r\nA: " + std::string(300, 'v'), limits).status ==
        head_status::too_large);
}

TEST_CASE("Transfer-Encoding: only a single chunked is framed") {
  using v = std::vector<std::string_view>;
  CHECK(check_transfer_encoding(v{"chunked"}) == coding_verdict::chunked);
  CHECK(check_transfer_encoding(v{"Chunked"}) == coding_verdict::chunked);
  CHECK(check_transfer_encoding(v{" chunked\t"}) == coding_verdict::chunked);
  CHECK(check_transfer_encoding(v{"gzip, chunked"}) == coding_verdict::unsupported);
  CHECK(check_transfer_encoding(v{"gzip", "chunked"}) == coding_verdict::unsupported);
  CHECK(check_transfer_encoding(v{"xchunked"}) == coding_verdict::unsupported);
  CHECK(check_transfer_encoding(v{"identity"}) == coding_verdict::unsupported);
  CHECK(check_transfer_encoding(v{"chunked, identity"}) == coding_verdict::malformed);
  CHECK(check_transfer_encoding(v{"chunked", "chunked"}) == coding_verdict::malformed);
  CHECK(check_transfer_encoding(v{"chunked, chunked"}) == coding_verdict::malformed);
  CHECK(check_transfer_encoding(v{""}) == coding_verdict::malformed);
  CHECK(check_transfer_encoding(v{",chunked"}) == coding_verdict::malformed);
  CHECK(check_transfer_encoding(v{"chunked,"}) == coding_verdict::malformed);
  CHECK(check_transfer_encoding(v{"chunked;q=1"}) == coding_verdict::malformed);
  CHECK(check_transfer_encoding(v{"chun ked"}) == coding_verdict::malformed);
  CHECK(check_transfer_encoding(v{"\"chunked\""}) == coding_verdict::malformed);
}

TEST_CASE("field values that could split a message are not safe to send") {
  CHECK(wk::wire::is_safe_field_value("https://example.com/a?b"));
  CHECK(wk::wire::is_safe_field_value(""));
  CHECK_FALSE(wk::wire::is_safe_field_value("a\r\nSet-Cookie: x"));
  CHECK_FALSE(wk::wire::is_safe_field_value("a\nb"));
  CHECK_FALSE(wk::wire::is_safe_field_value(std::string_view("a\0b", 3)));
}

TEST_CASE("the verdict does not depend on how the bytes arrive (found by fuzz_request)") {
  head_limits limits;
  limits.header_bytes = 4096;
  limits.target_bytes = 1024;
  // A request line over the limit with a bad character late in it: 414 whether the scanner
  // sees the line whole or first sees the part without the bad character.
  std::string head = "GET /" + std::string(1500, '7') + "\x01" + " HTTP/1.1\r\n\r\n";
  CHECK(scan_all(head, limits).status == head_status::target_too_long);
  CHECK(scan_bytewise(head, limits).status == head_status::target_too_long);
  // A field line over the head limit with a bare CR: 431 either way.
  std::string field = "GET / HTTP/1.1\r\nX: " + std::string(5000, 'v') + "\rx\r\n\r\n";
  CHECK(scan_all(field, limits).status == head_status::too_large);
  CHECK(scan_bytewise(field, limits).status == head_status::too_large);
}

TEST_CASE("the scanner notes where the parts of the head are, however the bytes arrive") {
  const std::string bytes =
      "\r\nPOST /a/b HTTP/1.0\r\nHost: example.com\r\nX-Y:\t z  \r\nE:\r\n\r\n";
  for (bool bytewise : {false, true}) {
    CAPTURE(bytewise);
    wk::wire::head_layout layout;
    layout.fields.resize(3);  // what a previous request left is cleared
    request_head_scanner s{head_limits{}, layout};
    head_scan r;
    for (std::size_t n = bytewise ? 1 : bytes.size(); n <= bytes.size(); ++n) {
      r = s.scan(std::string_view(bytes).substr(0, n));
    }
    REQUIRE(r.status == head_status::complete);
    auto part = [&](std::uint32_t at, std::uint32_t size) {
      return std::string_view(bytes).substr(at, size);
    };
    CHECK(part(layout.method_at, layout.method_size) == "POST");
    CHECK(part(layout.target_at, layout.target_size) == "/a/b");
    CHECK(layout.version == 10);
    REQUIRE(layout.fields.size() == 3);
    CHECK(part(layout.fields[0].name_at, layout.fields[0].name_size) == "Host");
    CHECK(part(layout.fields[0].value_at, layout.fields[0].value_size) == "example.com");
    CHECK(part(layout.fields[1].name_at, layout.fields[1].name_size) == "X-Y");
    CHECK(part(layout.fields[1].value_at, layout.fields[1].value_size) == "z");
    CHECK(part(layout.fields[2].name_at, layout.fields[2].name_size) == "E");
    CHECK(layout.fields[2].value_size == 0);
  }
}
