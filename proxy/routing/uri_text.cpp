#include "routing/uri_text.hpp"

#include <cstddef>

namespace wk::routing {

std::string canonical_escapes(std::string_view s, bool decode_unreserved) {
  std::string out;
  append_canonical_escapes(s, decode_unreserved, out);
  return out;
}

void append_canonical_escapes(std::string_view s, bool decode_unreserved, std::string& out) {
  out.reserve(out.size() + s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%' || i + 2 >= s.size()) {
      out.push_back(s[i]);
      continue;
    }
    const int hi = hex_value(s[i + 1]);
    const int lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) {
      out.push_back(s[i]);
      continue;
    }
    const auto decoded = static_cast<char>(hi * 16 + lo);
    if (decode_unreserved && is_unreserved(decoded)) {
      out.push_back(decoded);
    } else {
      out.push_back('%');
      out.push_back(hex_digits[static_cast<std::size_t>(hi)]);
      out.push_back(hex_digits[static_cast<std::size_t>(lo)]);
    }
    i += 2;
  }
}

}  // namespace wk::routing
