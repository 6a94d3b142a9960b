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
  for (;;) {
    // Most of a target is not escaped: the text up to the next '%' goes in one append
    // (measured: 2,700 of a validation request's 42,500 instructions went to a byte-wise copy).
    const auto pct = s.find('%');
    out.append(s.substr(0, pct));
    if (pct == std::string_view::npos) {
      return;
    }
    s.remove_prefix(pct);
    if (s.size() < 3) {
      out.append(s);  // too short for an escape (a '%' in it is no escape either)
      return;
    }
    const int hi = hex_value(s[1]);
    const int lo = hex_value(s[2]);
    if (hi < 0 || lo < 0) {
      out.push_back('%');
      s.remove_prefix(1);
      continue;
    }
    const auto decoded = static_cast<char>(hi * 16 + lo);
    if (decode_unreserved && is_unreserved(decoded)) {
      out.push_back(decoded);
    } else {
      const char escape[3] = {'%', hex_digits[static_cast<std::size_t>(hi)],
                              hex_digits[static_cast<std::size_t>(lo)]};
      out.append(escape, 3);
    }
    s.remove_prefix(3);
  }
}

}  // namespace wk::routing
