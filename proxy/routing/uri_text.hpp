#pragma once
// Character-level helpers shared by the routing code (RFC 3986 character classes and
// percent-encoding). Pure, locale-independent.

#include <string>
#include <string_view>

namespace wk::routing {

inline constexpr std::string_view hex_digits = "0123456789ABCDEF";

// 0..15 for a hex digit (either case), -1 otherwise.
constexpr int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// RFC 3986 section 2.3.
constexpr bool is_unreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// Rewrites each valid %XX triplet: decoded when it encodes an unreserved character (if
// `decode_unreserved`), otherwise kept with upper-case hex (RFC 3986 section 6.2.2.1-2).
// Invalid triplets are copied unchanged.
std::string canonical_escapes(std::string_view s, bool decode_unreserved);
// The same, appended to `out` (no allocation when `out` has the room).
void append_canonical_escapes(std::string_view s, bool decode_unreserved, std::string& out);

}  // namespace wk::routing
