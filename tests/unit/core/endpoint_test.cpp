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

TEST_CASE("an address prints without brackets; IPv4 digit by digit, every byte width") {
  for (const char* a : {"0.0.0.0", "1.2.3.4", "10.20.30.40", "100.200.250.255", "127.0.0.1",
                        "255.255.255.255", "192.0.2.9"}) {
    CAPTURE(a);
    CHECK(wk::core::address_text(asio::ip::make_address(a)) == a);
  }
  CHECK(wk::core::address_text(asio::ip::make_address("2001:db8::1")) == "2001:db8::1");
}

TEST_CASE("a host goes before :port with brackets only when it has a colon") {
  CHECK(wk::core::host_text("example.com") == "example.com");
  CHECK(wk::core::host_text("192.0.2.1") == "192.0.2.1");
  CHECK(wk::core::host_text("::1") == "[::1]");
  CHECK(wk::core::host_port_text("example.com", 8080) == "example.com:8080");
  CHECK(wk::core::host_port_text("::1", 443) == "[::1]:443");
  CHECK(wk::core::host_port_text("", 0) == ":0");
}

TEST_CASE("a port is one to five digits up to 65535, nothing else") {
  CHECK(wk::core::parse_port("80") == 80);
  CHECK(wk::core::parse_port("0") == 0);
  CHECK(wk::core::parse_port("65535") == 65535);
  CHECK(wk::core::parse_port("00443") == 443);
  for (const char* bad :
       {"", "65536", "99999", "000080", "-1", "+80", " 80", "80 ", "8a", "0x50"}) {
    CAPTURE(bad);
    CHECK_FALSE(wk::core::parse_port(bad).has_value());
  }
}
