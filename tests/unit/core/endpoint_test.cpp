#include "core/endpoint.hpp"

#include <doctest/doctest.h>

namespace asio = boost::asio;

TEST_CASE("an endpoint prints as address:port, IPv6 in brackets") {
  CHECK(wk::core::endpoint_text(
            asio::ip::tcp::endpoint(asio::ip::make_address("192.0.2.1"), 443)) == "192.0.2.1:443");
  CHECK(wk::core::endpoint_text(asio::ip::tcp::endpoint(asio::ip::make_address("2001:db8::1"),
                                                        0)) == "[2001:db8::1]:0");
  CHECK(wk::core::endpoint_text(asio::ip::make_address("::ffff:192.0.2.1"), 65535) ==
        "[::ffff:192.0.2.1]:65535");
}
