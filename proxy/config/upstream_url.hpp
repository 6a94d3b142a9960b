#pragma once
// Parsing an upstream URL such as "https://d111111abcdef8.cloudfront.net" with Boost.URL.

#include "config/config.hpp"

#include <string>
#include <string_view>
#include <variant>

namespace wk::config {

// Accepts http:// and https:// with a host (DNS name, IPv4, or [IPv6]) and an optional port;
// the path must be empty or "/"; no user info, query or fragment. Fills tls, host, port, and
// sni (= host when host is a DNS name). On failure returns the reason, e.g.
// "scheme must be http or https".
std::variant<upstream, std::string> parse_upstream_url(std::string_view url);

// "127.0.0.1:8080", "[::1]:0", "0.0.0.0:80", ":80" (all IPv4 addresses). The host must be an IP
// literal. On failure returns the reason.
std::variant<listener, std::string> parse_listen_address(std::string_view text);

}  // namespace wk::config
