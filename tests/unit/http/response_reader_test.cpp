#include "http/response_reader.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>

#include <doctest/doctest.h>

#include <array>
#include <string>
#include <string_view>

namespace bhttp = boost::beast::http;
using wk::http::head_storage;
using wk::http::response_reader;

namespace {

// Feeds `bytes` to `r` the way the session does: header first, then body into `out`.
std::string parse_all(response_reader& r, std::string_view bytes, bool& ok) {
  boost::system::error_code ec;
  auto used = r.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
  bytes.remove_prefix(used);
  ok = !ec && r.is_header_done();
  std::string body;
  std::array<char, 7> window{};  // small: the body arrives in several pieces
  while (ok && !r.is_done()) {
    r.body().data = window.data();
    r.body().size = window.size();
    used = r.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
    bytes.remove_prefix(used);
    body.append(window.data(), window.size() - r.body().size);
    if (ec == bhttp::error::need_buffer) {
      ec = {};
      continue;
    }
    if (ec || used == 0) {
      ok = !ec && r.is_done();
      break;
    }
  }
  return body;
}

}  // namespace

TEST_CASE("a response's status, reason and fields are kept in order, with repeats") {
  head_storage storage;
  response_reader r(storage);
  bool ok = false;
  auto body = parse_all(r,
                        "HTTP/1.1 404 Not Here\r\nContent-Type: text/plain\r\nX-A: 1\r\n"
                        "Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 11\r\n\r\n"
                        "hello world",
                        ok);
  REQUIRE(ok);
  CHECK(r.result_int() == 404);
  CHECK(r.reason() == "Not Here");
  CHECK(r.version() == 11);
  REQUIRE(r.fields().size() == 5);
  CHECK(r.fields()[1].name() == bhttp::field::unknown);
  CHECK(r.fields()[1].name_string() == "X-A");
  CHECK(r.count(bhttp::field::set_cookie) == 2);
  CHECK(r[bhttp::field::set_cookie] == "a=1");
  CHECK(r[bhttp::field::content_type] == "text/plain");
  CHECK(r[bhttp::field::server].empty());
  CHECK(body == "hello world");
  CHECK(r.keep_alive());
}

TEST_CASE("a chunked body arrives through the window, safe trailers are kept apart") {
  head_storage storage;
  response_reader r(storage);
  bool ok = false;
  auto body = parse_all(r,
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5\r\nhello\r\nb\r\n, chunked!!\r\n0\r\nX-Trailer: t\r\n"
                        "Content-Type: text/evil\r\nServer-Timing: db;dur=53\r\n\r\n",
                        ok);
  REQUIRE(ok);
  CHECK(r.chunked());
  CHECK(body == "hello, chunked!!");
  // Trailers never join the header fields.
  CHECK(r.fields().size() == 1);
  CHECK(r[bhttp::field::unknown].empty());
  CHECK(r[bhttp::field::content_type].empty());
  CHECK(r.trailers() == "X-Trailer: t\r\nServer-Timing: db;dur=53\r\n");
  CHECK(r.trailers_dropped() == 1);
}

TEST_CASE("trailers of one response do not carry over to the next on the same storage") {
  head_storage storage;
  {
    response_reader first(storage);
    bool ok = false;
    parse_all(first, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-A: 1\r\n\r\n",
              ok);
    REQUIRE(ok);
    CHECK(first.trailers() == "X-A: 1\r\n");
  }
  response_reader second(storage);
  bool ok = false;
  parse_all(second, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", ok);
  REQUIRE(ok);
  CHECK(second.trailers().empty());
  CHECK(second.trailers_dropped() == 0);
}

TEST_CASE("storage is reused: a second response sees only its own fields") {
  head_storage storage;
  {
    response_reader interim(storage);
    bool ok = false;
    parse_all(interim, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", ok);
    REQUIRE(ok);
    CHECK(interim.result_int() == 103);
  }
  response_reader final_answer(storage);
  bool ok = false;
  parse_all(final_answer, "HTTP/1.0 200 \r\nContent-Length: 0\r\n\r\n", ok);
  REQUIRE(ok);
  CHECK(final_answer.result_int() == 200);
  CHECK(final_answer.reason().empty());
  CHECK(final_answer.version() == 10);
  REQUIRE(final_answer.fields().size() == 1);
  CHECK(final_answer.fields()[0].name() == bhttp::field::content_length);
  CHECK_FALSE(final_answer.keep_alive());
}

TEST_CASE("malformed framing is refused by the same grammar as Beast's parser") {
  head_storage storage;
  response_reader r(storage);
  boost::system::error_code ec;
  const std::string_view bad =
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello";
  r.put(boost::asio::buffer(bad.data(), bad.size()), ec);
  CHECK(ec);
}
