#include "wire/request_head.hpp"

#include "core/ascii.hpp"

#include <algorithm>
#include <cstring>

namespace wk::wire {

namespace {

// Empty lines tolerated before a request line (clients that send CRLF after a POST body).
constexpr std::size_t max_leading_empty_lines = 4;
// Method and version around the target on a request line, at most.
constexpr std::size_t request_line_slack = 64;

constexpr bool is_field_value_char(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);  // SP, VCHAR, obs-text
}

head_scan fail(head_status s, std::string_view reason) {
  head_scan r;
  r.status = s;
  r.reason = reason;
  return r;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// request-line = method SP request-target SP HTTP-version (RFC 9112 section 3). `at`: the
// line's offset, for `layout` (may be null).
head_scan check_request_line(std::string_view line, std::size_t at, const head_limits& limits,
                             head_layout* layout) {
  auto sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) {
    return fail(head_status::invalid, "malformed request line");
  }
  auto method = line.substr(0, sp1);
  if (!core::is_token(method)) {
    return fail(head_status::invalid, "invalid method");
  }
  auto rest = line.substr(sp1 + 1);
  auto sp2 = rest.find(' ');
  if (sp2 == std::string_view::npos) {
    return fail(head_status::invalid, "malformed request line (no HTTP version)");
  }
  auto target = rest.substr(0, sp2);
  auto version = rest.substr(sp2 + 1);
  if (target.empty()) {
    return fail(head_status::invalid, "malformed request line (empty target)");
  }
  if (target.size() > limits.target_bytes) {
    return fail(head_status::target_too_long, "request target over the limit");
  }
  for (char c : target) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return fail(head_status::invalid, "invalid character in request target");
    }
  }
  if (version.size() != 8 || !version.starts_with("HTTP/") || !is_digit(version[5]) ||
      version[6] != '.' || !is_digit(version[7])) {
    return fail(head_status::invalid, "malformed HTTP version");
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return fail(head_status::bad_version, "only HTTP/1.0 and HTTP/1.1 are served");
  }
  if (layout != nullptr) {
    // The head is bounded by header_bytes (well under 4 GiB): offsets fit.
    layout->method_at = static_cast<std::uint32_t>(at);
    layout->method_size = static_cast<std::uint32_t>(sp1);
    layout->target_at = static_cast<std::uint32_t>(at + sp1 + 1);
    layout->target_size = static_cast<std::uint32_t>(target.size());
    layout->version = version[7] == '1' ? 11 : 10;
  }
  return {};
}

bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

// field-line = field-name ":" OWS field-value OWS (RFC 9112 section 5). Notes the name and the
// value without OWS in `span` (offsets from the line's start).
head_scan check_field_line(std::string_view line, field_span& span) {
  if (line.front() == ' ' || line.front() == '\t') {
    return fail(head_status::invalid, "obsolete line folding in a header field");
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) {
    return fail(head_status::invalid, "header field without a colon");
  }
  auto name = line.substr(0, colon);
  if (name.empty()) {
    return fail(head_status::invalid, "empty header field name");
  }
  if (!core::is_token(name)) {
    return fail(head_status::invalid, name.back() == ' ' || name.back() == '\t'
                                          ? "whitespace before the colon of a header field"
                                          : "invalid character in a header field name");
  }
  auto value_at = colon + 1;
  auto value_end = line.size();
  for (auto i = value_at; i < value_end; ++i) {
    if (!is_field_value_char(static_cast<unsigned char>(line[i]))) {
      return fail(head_status::invalid, "control character in a header field value");
    }
  }
  while (value_at < value_end && is_ows(line[value_at])) {
    ++value_at;
  }
  while (value_end > value_at && is_ows(line[value_end - 1])) {
    --value_end;
  }
  span.name_at = 0;
  span.name_size = static_cast<std::uint32_t>(colon);
  span.value_at = static_cast<std::uint32_t>(value_at);
  span.value_size = static_cast<std::uint32_t>(value_end - value_at);
  return {};
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

bool is_safe_field_value(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return is_field_value_char(static_cast<unsigned char>(c)); });
}

head_scan request_head_scanner::scan(std::string_view bytes) {
  // Empty lines before the request line.
  while (!request_line_ && next_ == skip_) {
    auto rest = bytes.substr(skip_);
    if (rest.empty() || (rest.size() == 1 && rest[0] == '\r')) {
      return {};
    }
    if (rest[0] == '\n') {
      return fail(head_status::invalid, "bare LF before the request line");
    }
    if (rest[0] != '\r') {
      break;
    }
    if (rest[1] != '\n') {
      return fail(head_status::invalid, "bare CR before the request line");
    }
    if (skip_ / 2 >= max_leading_empty_lines) {
      return fail(head_status::invalid, "too many empty lines before the request line");
    }
    skip_ += 2;
    next_ = skip_;
  }

  for (;;) {
    auto rest = bytes.substr(next_);
    const void* lf = std::memchr(rest.data(), '\n', rest.size());
    if (lf == nullptr) {
      // A partial line: only its length can be judged yet.
      // Judged exactly as the complete line will be, so the verdict does not depend on how
      // the bytes were split across reads.
      auto head_so_far = bytes.size() - skip_;
      auto line_so_far = rest.size() - (rest.ends_with('\r') ? 1 : 0);
      if (!request_line_ && line_so_far > limits_.target_bytes + request_line_slack) {
        return fail(head_status::target_too_long, "request line over the limit");
      }
      if (head_so_far > limits_.header_bytes) {
        return fail(request_line_ ? head_status::too_large : head_status::target_too_long,
                    "request header over the limit");
      }
      head_scan r;
      r.skip = skip_;
      return r;
    }
    auto end = static_cast<std::size_t>(static_cast<const char*>(lf) - rest.data());
    const bool crlf = end > 0 && rest[end - 1] == '\r';
    auto line_end = next_ + end + 1;
    // Sizes first, as for a partial line above.
    if (!request_line_ && end - (crlf ? 1 : 0) > limits_.target_bytes + request_line_slack) {
      return fail(head_status::target_too_long, "request line over the limit");
    }
    if (line_end - skip_ > limits_.header_bytes) {
      if (!request_line_) {
        return fail(head_status::target_too_long, "request line over the limit");
      }
      return fail(head_status::too_large, "request header over the limit");
    }
    if (!crlf) {
      return fail(head_status::invalid, "bare LF as a line ending");
    }
    auto line = rest.substr(0, end - 1);
    if (line.find('\r') != std::string_view::npos) {
      return fail(head_status::invalid, "bare CR in the request header");
    }
    if (!request_line_) {
      if (auto r = check_request_line(line, next_, limits_, layout_);
          r.status != head_status::incomplete) {
        return r;
      }
      request_line_ = true;
    } else if (line.empty()) {
      head_scan r;
      r.status = head_status::complete;
      r.skip = skip_;
      r.length = line_end - skip_;
      return r;
    } else {
      field_span span;
      if (auto r = check_field_line(line, span); r.status != head_status::incomplete) {
        return r;
      }
      if (++fields_ > limits_.field_count) {
        return fail(head_status::too_large, "too many header fields");
      }
      if (layout_ != nullptr) {
        const auto at = static_cast<std::uint32_t>(next_);
        span.name_at += at;
        span.value_at += at;
        layout_->fields.push_back(span);
      }
    }
    next_ = line_end;
  }
}

coding_verdict check_transfer_encoding(const std::vector<std::string_view>& values) {
  std::vector<std::string_view> codings;
  for (auto value : values) {
    std::size_t start = 0;
    for (;;) {
      auto comma = value.find(',', start);
      auto element = trim_ows(value.substr(
          start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
      // Empty elements and parameters (";...") are not accepted: framing must be unambiguous.
      if (!core::is_token(element)) {
        return coding_verdict::malformed;
      }
      codings.push_back(element);
      if (comma == std::string_view::npos) {
        break;
      }
      start = comma + 1;
    }
  }
  if (codings.empty()) {
    return coding_verdict::malformed;
  }
  auto chunked = std::count_if(codings.begin(), codings.end(),
                               [](std::string_view c) { return core::iequals(c, "chunked"); });
  if (chunked > 1 || (chunked == 1 && !core::iequals(codings.back(), "chunked"))) {
    return coding_verdict::malformed;
  }
  if (codings.size() != 1 || chunked != 1) {
    return coding_verdict::unsupported;
  }
  return coding_verdict::chunked;
}

}  // namespace wk::wire
