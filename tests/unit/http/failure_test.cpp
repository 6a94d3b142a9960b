#include "http/failure.hpp"
#include "http/local_reply.hpp"

#include <doctest/doctest.h>

#include <string>

using wk::http::failure;

TEST_CASE("each failure maps to the documented status") {
  struct row {
    failure f;
    unsigned status;
  };
  const row rows[] = {
      {failure::bad_request, 400},
      {failure::method_not_allowed, 405},
      {failure::header_timeout, 408},
      {failure::body_too_large, 413},
      {failure::target_too_long, 414},
      {failure::header_too_large, 431},
      {failure::version_not_supported, 505},
      {failure::not_implemented, 501},
      {failure::upstream_unresolved, 502},
      {failure::upstream_refused, 502},
      {failure::upstream_connect_timeout, 504},
      {failure::upstream_tls, 502},
      {failure::upstream_reset, 502},
      {failure::upstream_bad_response, 502},
      {failure::upstream_timeout, 504},
      {failure::client_gone, 0},
      {failure::client_timeout, 0},
      {failure::too_many_connections, 503},
      {failure::internal, 500},
  };
  for (const auto& r : rows) {
    CAPTURE(wk::http::name_of(r.f));
    CHECK(wk::http::status_for(r.f) == r.status);
    CHECK_FALSE(wk::http::describe(r.f).empty());
  }
}

TEST_CASE("an error reply is a complete response that closes the connection") {
  auto reply = wk::http::error_reply(failure::upstream_timeout, "origin 127.0.0.1:1", false);
  const std::string body = "wkproxy: upstream did not answer in time: origin 127.0.0.1:1\n";
  CHECK(reply == "HTTP/1.1 504 Gateway Timeout\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: " +
                     std::to_string(body.size()) +
                     "\r\n"
                     "Cache-Control: no-store\r\n"
                     "Connection: close\r\n\r\n" +
                     body);
}

TEST_CASE("an error reply to HEAD keeps the length but sends no body") {
  auto reply = wk::http::error_reply(failure::bad_request, "", true);
  const std::string body = "wkproxy: malformed request\n";
  CHECK(reply.find("Content-Length: " + std::to_string(body.size()) + "\r\n") != std::string::npos);
  CHECK(reply.find(body) == std::string::npos);
  CHECK(reply.substr(reply.size() - 4) == "\r\n\r\n");
}

TEST_CASE("details cannot inject headers into an error reply") {
  auto reply = wk::http::error_reply(failure::bad_request, "x\r\nSet-Cookie: a=1", false);
  CHECK(reply.find("\r\nSet-Cookie") == std::string::npos);
}

TEST_CASE("validation replies: redirect with Location, static body, never cached") {
  const std::string to = "https://validation.us-east-1.acm-validations.aws/1/.well-known/x.txt";
  CHECK(wk::http::validation_reply(308, to, "", true, false) ==
        "HTTP/1.1 308 Permanent Redirect\r\n"
        "Content-Type: text/plain\r\n"
        "Content-Length: 0\r\n"
        "Cache-Control: no-store\r\n"
        "Location: " +
            to + "\r\n\r\n");
  CHECK(wk::http::validation_reply(200, "", "token", false, false) == "HTTP/1.1 200 OK\r\n"
                                                                      "Content-Type: text/plain\r\n"
                                                                      "Content-Length: 5\r\n"
                                                                      "Cache-Control: no-store\r\n"
                                                                      "Connection: close\r\n\r\n"
                                                                      "token");
  // HEAD: the same head, no body.
  CHECK(wk::http::validation_reply(200, "", "token", true, true).ends_with("\r\n\r\n"));
  // A Location that could split the reply is refused outright.
  CHECK(wk::http::validation_reply(301, "https://a/\r\nSet-Cookie: x=1", "", true, false).empty());
}
