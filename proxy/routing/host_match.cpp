#include "routing/host_match.hpp"

#include "core/ascii.hpp"
#include "core/host_pattern.hpp"

#include <algorithm>
#include <cstddef>

namespace wk::routing {
namespace {

bool is_hex(char c) {
  return core::is_digit(c) || (c >= 'a' && c <= 'f');
}

// RFC 3986 reg-name restricted to what DNS names and common practice use.
bool is_reg_name_char(char c) {
  return (c >= 'a' && c <= 'z') || core::is_digit(c) || c == '-' || c == '.' || c == '_';
}

// 1-5 digits, at most 65535.
bool valid_port(std::string_view port) {
  if (port.empty() || port.size() > 5) {
    return false;
  }
  unsigned value = 0;
  for (const char c : port) {
    if (!core::is_digit(c)) {
      return false;
    }
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value <= 65535;
}

// Dotted-quad IPv4 (RFC 3986 IPv4address), used for the tail of an IPv6 literal.
bool is_ipv4(std::string_view s) {
  int octets = 0;
  while (true) {
    const auto dot = s.find('.');
    const std::string_view octet = s.substr(0, dot);
    if (octet.empty() || octet.size() > 3 || (octet.size() > 1 && octet[0] == '0')) {
      return false;
    }
    unsigned value = 0;
    for (const char c : octet) {
      if (!core::is_digit(c)) {
        return false;
      }
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value > 255) {
      return false;
    }
    ++octets;
    if (dot == std::string_view::npos) {
      break;
    }
    s.remove_prefix(dot + 1);
  }
  return octets == 4;
}

// RFC 4291 section 2.2 text forms (lower-case input): eight 16-bit groups, one "::" standing for
// one or more zero groups, an optional dotted-quad tail counting as two groups. No zone id.
bool is_ipv6(std::string_view s) {
  int groups = 0;
  bool compressed = false;
  std::size_t i = 0;
  if (s.starts_with("::")) {
    compressed = true;
    i = 2;
  } else if (s.empty() || s[0] == ':') {
    return false;
  }
  while (i < s.size()) {
    std::size_t j = i;
    while (j < s.size() && is_hex(s[j])) {
      ++j;
    }
    if (j < s.size() && s[j] == '.') {
      if (!is_ipv4(s.substr(i))) {
        return false;
      }
      groups += 2;
      break;
    }
    if (j == i || j - i > 4) {
      return false;
    }
    ++groups;
    i = j;
    if (i == s.size()) {
      break;
    }
    if (s[i] != ':') {
      return false;
    }
    ++i;
    if (i < s.size() && s[i] == ':') {
      if (compressed) {
        return false;
      }
      compressed = true;
      ++i;
    } else if (i == s.size()) {
      return false;  // a single trailing ':'
    }
  }
  return compressed ? groups <= 7 : groups == 8;
}

}  // namespace

bool normalize_host(std::string_view value, std::string& out) {
  out.assign(value);
  for (char& c : out) {
    c = core::to_lower(c);
  }
  const std::string_view s = out;

  if (s.starts_with('[')) {
    const auto close = s.find(']');
    if (close == std::string_view::npos) {
      return false;
    }
    const std::string_view rest = s.substr(close + 1);
    if (!rest.empty() && (rest[0] != ':' || !valid_port(rest.substr(1)))) {
      return false;
    }
    if (!is_ipv6(s.substr(1, close - 1))) {
      return false;
    }
    out.erase(close);
    out.erase(0, 1);
    return true;
  }

  std::string_view host = s;
  if (const auto colon = s.find(':'); colon != std::string_view::npos) {
    host = s.substr(0, colon);
    if (!valid_port(s.substr(colon + 1))) {
      return false;
    }
  }
  if (host.ends_with('.')) {
    host.remove_suffix(1);  // the absolute DNS form "example.com." names the same host
  }
  if (host.empty() || host.front() == '.' || host.back() == '.' ||
      host.find("..") != std::string_view::npos ||
      !std::all_of(host.begin(), host.end(), is_reg_name_char)) {
    return false;
  }
  out.resize(host.size());  // the host is a prefix of `out`
  return true;
}

std::optional<std::string> normalize_host(std::string_view value) {
  std::string out;
  if (!normalize_host(value, out)) {
    return std::nullopt;
  }
  return out;
}

host_allow_list::host_allow_list(const std::vector<std::string>& patterns) {
  for (const auto& raw : patterns) {
    std::string pattern = core::to_lower(raw);
    if (pattern.size() > 1 && pattern.ends_with('.')) {
      pattern.pop_back();  // same trailing-dot rule as normalize_host
    }
    if (pattern == "*") {
      any_ = true;
    } else if (core::is_wildcard(pattern)) {
      wildcards_.push_back(std::move(pattern));
    } else if (!pattern.empty()) {
      exact_.push_back(std::move(pattern));
    }
  }
  std::sort(exact_.begin(), exact_.end());
}

bool host_allow_list::allows(std::string_view normalized_host) const {
  if (normalized_host.empty()) {
    return false;  // no Host at all (HTTP/1.0) never reaches the validation route
  }
  if (any_ || std::binary_search(exact_.begin(), exact_.end(), normalized_host)) {
    return true;
  }
  return std::any_of(wildcards_.begin(), wildcards_.end(), [&](const std::string& pattern) {
    return core::wildcard_matches(pattern, normalized_host);
  });
}

}  // namespace wk::routing
