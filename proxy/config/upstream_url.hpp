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

// A TCP backend of a passthrough listener: "HOST:PORT" with a DNS name, IPv4 or [IPv6] and a
// port (required, 1-65535). Fills host and port (tls false, no SNI). On failure returns the
// reason.
std::variant<upstream, std::string> parse_tcp_address(std::string_view text);

// An address range, "10.0.0.0/8" or "2001:db8::/32", or one address ("127.0.0.1" is /32,
// "::1" is /128). Bits beyond the prefix must be zero. On failure returns the reason.
std::variant<cidr, std::string> parse_cidr(std::string_view text);

// A DNS name as a resolver accepts it: dot-separated labels of 1..63 letters, digits, '-' or
// '_' (no leading or trailing '-'), 253 characters at most, the last label not all digits.
bool is_host_name(std::string_view name);

// `url` with "<scheme>://" put in front when it has no scheme of its own (no "name://" at its
// start). The CloudFront API documents RedirectFrom and RedirectTo as plain strings, and its own
// example output gives both without a scheme ("example.com/.well-known/pki-validation/x.txt"):
// RedirectFrom is then http (the CA fetches over plain HTTP), RedirectTo https.
std::string with_default_scheme(std::string_view url, std::string_view scheme);

// The parts of an ACM RedirectFrom URL, "http://<domain>/<prefix><file>".
struct redirect_from_parts {
  std::string domain;  // lower-case
  std::string file;    // a single safe segment: [A-Za-z0-9._-]+
};

// Checks a RedirectFrom URL against the validation prefix: http (assumed when the URL has no
// scheme), a DNS name without port, user info, query or fragment, and a path of exactly
// `prefix` + one safe file name. On failure returns the reason.
std::variant<redirect_from_parts, std::string> parse_redirect_from(std::string_view given,
                                                                   std::string_view prefix);

// The parts of an ACM RedirectTo URL, "https://validation.<region>.acm-validations.aws/...".
struct redirect_to_parts {
  std::string host;  // lower-case DNS name
  std::uint16_t port = 443;
  std::string target;  // path (+ "?query"), as written
};

// Checks a RedirectTo URL: https (assumed when the URL has no scheme), a DNS name, an optional
// port, a non-empty path, no user info or fragment. On failure returns the reason.
std::variant<redirect_to_parts, std::string> parse_redirect_to(std::string_view given);

}  // namespace wk::config
