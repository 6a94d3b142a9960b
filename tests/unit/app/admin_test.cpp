// The admin listener's Host check (issue 18, finding 9): without a token, only Host values that
// DNS cannot re-point at this machine are served.

#include "app/admin.hpp"

#include <doctest/doctest.h>

using wk::app::unrebindable_host;

TEST_CASE("IP literals and localhost, with an optional port, cannot be rebound") {
  for (const char* host : {"127.0.0.1", "127.0.0.1:9901", "10.1.2.3:80", "0.0.0.0", "localhost",
                           "LOCALHOST", "localhost:9901", "[::1]", "[::1]:9901", "[fe80::1]:1",
                           "[::ffff:127.0.0.1]:9901", "127.0.0.1:"}) {
    CAPTURE(host);
    CHECK(unrebindable_host(host));
  }
}

TEST_CASE("names and anything that is not a plain literal are refused") {
  for (const char* host : {"",
                           "evil.example",
                           "evil.example:9901",
                           "localhost.",
                           "localhost.evil.example",
                           "127.0.0.1.nip.io",
                           "0x7f000001",
                           "2130706433",
                           "127.1",
                           "::1",
                           "[::1",
                           "[::1]x",
                           "[::1]:99999x",
                           "[::1]:123456",
                           "127.0.0.1:80@evil.example",
                           "127.0.0.1:http",
                           "127.0.0.1:9901:1",
                           "[fe80::1%25eth0]",
                           "[127.0.0.1]",
                           " 127.0.0.1",
                           "local host"}) {
    CAPTURE(host);
    CHECK_FALSE(unrebindable_host(host));
  }
}
