#pragma once
// ASCII character rules, locale-independent (std::tolower and friends follow the C locale, which
// must never decide how a protocol byte is read). Pure, constexpr where it can be.

#include <string>
#include <string_view>

namespace wk::core {

// 'A'..'Z' to 'a'..'z'; every other byte unchanged.
constexpr char to_lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// 'a'..'z' to 'A'..'Z'; every other byte unchanged.
constexpr char to_upper(char c) noexcept {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

// A copy of `s` with ASCII letters lower-cased.
std::string to_lower(std::string_view s);

// Equal when lower-cased (ASCII only).
constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::string_view::size_type i = 0; i < a.size(); ++i) {
    if (to_lower(a[i]) != to_lower(b[i])) {
      return false;
    }
  }
  return true;
}

constexpr bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

constexpr bool is_alpha(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// RFC 9110 section 5.6.2 tchar.
constexpr bool is_tchar(char c) noexcept {
  if (is_alpha(c) || is_digit(c)) {
    return true;
  }
  switch (c) {
  case '!':
  case '#':
  case '$':
  case '%':
  case '&':
  case '\'':
  case '*':
  case '+':
  case '-':
  case '.':
  case '^':
  case '_':
  case '`':
  case '|':
  case '~':
    return true;
  default:
    return false;
  }
}

// Space, horizontal tab, CR or LF: the white space a line of text or a pasted value may carry.
constexpr bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

// `s` without leading and trailing is_space characters.
constexpr std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_space(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_space(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

// RFC 9110 section 5.6.2 token: one or more tchar.
constexpr bool is_token(std::string_view s) noexcept {
  if (s.empty()) {
    return false;
  }
  for (const char c : s) {
    if (!is_tchar(c)) {
      return false;
    }
  }
  return true;
}

}  // namespace wk::core
