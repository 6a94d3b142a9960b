#include "http/request_reader.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>

#include <doctest/doctest.h>

#include <array>
#include <string>
#include <string_view>

namespace bhttp = boost::beast::http;
using wk::http::request_reader;
using wk::http::request_storage;

namespace {

// Scans and adopts the head at the start of `bytes` (as the session does); returns adopt's
// error, or header_limit when the scanner did not find a well-formed head.
boost::system::error_code adopt_head(request_reader& r, std::string_view bytes,
                                     std::size_t* head_end = nullptr) {
  auto scanner = r.scanner({});
  const auto scan = scanner.scan(bytes);
  if (scan.status != wk::wire::head_status::complete) {
    return bhttp::error::header_limit;
  }
  if (head_end != nullptr) {
    *head_end = scan.skip + scan.length;
  }
  return r.adopt(bytes, scan);
}

// The body after the head, read into a small window as the session reads it.
std::string read_body(request_reader& r, std::string_view rest, boost::system::error_code& ec) {
  std::string body;
  std::array<char, 7> window{};
  while (!r.is_done() && !rest.empty()) {
    r.body() = {window.data(), window.size()};
    ec = {};
    const auto used = r.put(boost::asio::buffer(rest.data(), rest.size()), ec);
    rest.remove_prefix(used);
    body.append(window.data(), window.size() - r.body().size);
    if (ec == bhttp::error::need_buffer) {
      continue;
    }
    if (ec) {
      break;
    }
  }
  return body;
}

}  // namespace

TEST_CASE("the head is read once: request line, fields in order, views into the storage") {
  request_storage s;
  request_reader r(s);
  const std::string bytes = "\r\nGET /a?b=c HTTP/1.0\r\nHost: example.com\r\nX-Y:  z \t\r\n"
                            "Connection: keep-alive\r\nNew-Field: 1\r\n\r\nnext";
  std::size_t end = 0;
  REQUIRE(!adopt_head(r, bytes, &end));
  CHECK(bytes.substr(end) == "next");
  CHECK(r.method() == bhttp::verb::get);
  CHECK(r.method_string() == "GET");
  CHECK(r.target() == "/a?b=c");
  CHECK(r.version() == 10);
  CHECK(r.keep_alive());
  REQUIRE(r.fields().size() == 4);
  CHECK(r.fields()[0].name() == bhttp::field::host);
  CHECK(r.fields()[1].name_string() == "X-Y");
  CHECK(r.fields()[1].value() == "z");  // whitespace around the value is not part of it
  CHECK(r.fields()[3].name() == bhttp::field::unknown);
  CHECK(r[bhttp::field::host] == "example.com");
  CHECK(r.count(bhttp::field::connection) == 1);
  CHECK(r.is_header_done());
  CHECK(r.is_done());  // no body
  // The views point into the reader's storage, not into the bytes read.
  CHECK(r.target().data() >= s.bytes.data());
  CHECK(r.target().data() < s.bytes.data() + s.bytes.size());
}

TEST_CASE("keep-alive by version and by every Connection field") {
  auto keep = [](std::string_view head) {
    request_storage s;
    request_reader r(s);
    REQUIRE(!adopt_head(r, head));
    return r.keep_alive();
  };
  CHECK(keep("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
  CHECK(!keep("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n"));
  CHECK(!keep("GET / HTTP/1.1\r\nConnection: x\r\nConnection: te, close\r\n\r\n"));
  CHECK(!keep("GET / HTTP/1.0\r\nHost: a\r\n\r\n"));
  CHECK(keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
}

TEST_CASE("framing refused as Beast's parser refuses it") {
  auto error_of = [](std::string_view head) {
    request_storage s;
    request_reader r(s);
    r.body_limit(1000);
    return adopt_head(r, head);
  };
  CHECK(error_of("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n") ==
        bhttp::error::bad_transfer_encoding);
  CHECK(error_of("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n") ==
        bhttp::error::bad_content_length);
  CHECK(error_of("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n") == bhttp::error::bad_transfer_encoding);
  CHECK(error_of("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n") ==
        bhttp::error::multiple_content_length);
  CHECK(error_of("POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n") ==
        bhttp::error::multiple_content_length);
  for (auto bad : {"-1", "+3", "3 3", "0x3", "", "3,,3", "99999999999999999999999"}) {
    CAPTURE(bad);
    CHECK(error_of("POST / HTTP/1.1\r\nContent-Length: " + std::string(bad) + "\r\n\r\n") ==
          bhttp::error::bad_content_length);
  }
  CHECK(error_of("GET / HTTP/1.1\r\nConnection: close;x\r\n\r\n") == bhttp::error::bad_value);
  CHECK(error_of("GET / HTTP/1.1\r\nProxy-Connection: a b\r\n\r\n") == bhttp::error::bad_value);
  CHECK(error_of("POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n") == bhttp::error::body_limit);
  // Accepted: a list of equal lengths, repeated equal fields, empty list elements elsewhere.
  CHECK(!error_of("POST / HTTP/1.1\r\nContent-Length: 3 , 3\r\nContent-Length: 3\r\n\r\n"));
  CHECK(!error_of("GET / HTTP/1.1\r\nConnection: , keep-alive,\r\n\r\n"));
}

TEST_CASE("a body of known length is read after the head, into the session's window") {
  request_storage s;
  request_reader r(s);
  const std::string bytes = "POST /u HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello worldGET";
  std::size_t end = 0;
  REQUIRE(!adopt_head(r, bytes, &end));
  CHECK(r.content_length().value_or(0) == 11);
  CHECK(!r.chunked());
  CHECK(!r.is_done());
  boost::system::error_code ec;
  CHECK(read_body(r, std::string_view(bytes).substr(end, 11), ec) == "hello world");
  CHECK(r.is_done());
}

TEST_CASE("a chunked body is decoded; its trailer fields are kept apart, unsafe ones dropped") {
  request_storage s;
  request_reader r(s);
  const std::string bytes = "POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Tag: head\r\n"
                            "Connection: X-Private\r\n\r\n"
                            "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n"
                            "Host: evil.example\r\nX-Private: 1\r\nX-Tag: trailer\r\n\r\n";
  std::size_t end = 0;
  REQUIRE(!adopt_head(r, bytes, &end));
  CHECK(r.chunked());
  CHECK(!r.content_length());
  boost::system::error_code ec;
  CHECK(read_body(r, std::string_view(bytes).substr(end), ec) == "hello world");
  CHECK(!ec);
  CHECK(r.is_done());
  CHECK(r.trailers() == "X-Checksum: abc\r\nX-Tag: trailer\r\n");
  CHECK(r.trailers_dropped() == 2);  // Host, and the field Connection names
  // The head stays as it was: no trailer field joined it.
  CHECK(r.count(bhttp::field::host) == 0);
  CHECK(r.fields().size() == 3);
}

TEST_CASE("a chunked body over the body limit, and bad chunk framing, are errors") {
  {
    request_storage s;
    request_reader r(s);
    r.body_limit(4);
    const std::string bytes = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
    std::size_t end = 0;
    REQUIRE(!adopt_head(r, bytes, &end));
    boost::system::error_code ec;
    read_body(r, std::string_view(bytes).substr(end), ec);
    CHECK(ec == bhttp::error::body_limit);
  }
  {
    request_storage s;
    request_reader r(s);
    const std::string bytes = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    std::size_t end = 0;
    REQUIRE(!adopt_head(r, bytes, &end));
    boost::system::error_code ec;
    read_body(r, std::string_view(bytes).substr(end), ec);
    CHECK(ec == bhttp::error::bad_chunk);
  }
}

TEST_CASE("the storage keeps its capacity from one request to the next") {
  request_storage s;
  {
    request_reader r(s);
    REQUIRE(!adopt_head(r, "GET /first HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-A: 1\r\n\r\n"));
  }
  const auto* bytes = s.bytes.data();
  const auto* fields = s.fields.data();
  request_reader again(s);
  REQUIRE(!adopt_head(again, "GET /2 HTTP/1.1\r\nHost: b\r\n\r\n"));
  CHECK(again.target() == "/2");
  CHECK(again[bhttp::field::host] == "b");
  CHECK(again.fields().size() == 1);
  CHECK(s.bytes.data() == bytes);
  CHECK(s.fields.data() == fields);
}
