#include "core/failure.hpp"
#include "http/local_reply.hpp"

#include <doctest/doctest.h>

#include <string>

using wk::core::failure;

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
