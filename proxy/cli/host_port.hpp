#pragma once
// A "HOST:PORT" argument of the command-line tools (`check --via`, `loadtest --target`).

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace wk::cli {

// "HOST:PORT" (a name or an IPv4 literal) or "[IPv6]:PORT".
struct host_port {
  std::string host;  // without brackets
  std::uint16_t port = 0;

  // "127.0.0.1:8080", "[::1]:8080".
  [[nodiscard]] std::string text() const;
};

// Parses "HOST:PORT"; the port must be 1..65535, the host is lower-cased and an IPv6 literal
// must be in brackets. On failure returns the reason.
std::variant<host_port, std::string> parse_host_port(std::string_view text);

}  // namespace wk::cli
