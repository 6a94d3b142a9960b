#pragma once
// The host pattern rule, the one place it is written (allow-lists, SNI routes, validation
// buckets, the config's own checks all call it): a pattern is an exact name, "*" (any host), or
// "*.example.com", which matches exactly one more label: "a.example.com", but neither
// "example.com" nor "a.b.example.com". Callers normalize (lower-case, trailing dot) before
// calling; only wildcard_matches_ignoring_case compares letters case-insensitively. Pure.

#include <string_view>

namespace wk::core {

// True for "*.x" (a "*." prefix and at least one more character).
constexpr bool is_wildcard(std::string_view pattern) noexcept {
  return pattern.size() > 2 && pattern.starts_with("*.");
}

// What a one-label wildcard must equal after its "*" for `host` to match: ".example.com" for
// "a.example.com" (the host from its first dot); empty when the host has no dot or starts with
// one (no first label).
constexpr std::string_view wildcard_suffix(std::string_view host) noexcept {
  const auto dot = host.find('.');
  if (dot == 0 || dot == std::string_view::npos) {
    return {};
  }
  return host.substr(dot);
}

// "*.suffix" against `host`, byte for byte: one non-empty label without dots, then ".suffix".
// False for a pattern not starting with "*.".
bool wildcard_matches(std::string_view pattern, std::string_view host) noexcept;

// The same rule with ASCII letters compared case-insensitively (SNI against certificate names,
// which may carry upper case).
bool wildcard_matches_ignoring_case(std::string_view pattern, std::string_view host) noexcept;

// The whole pattern rule: "*" matches any host, "*.suffix" as wildcard_matches, anything else
// only the identical name.
bool host_pattern_matches(std::string_view pattern, std::string_view host) noexcept;

}  // namespace wk::core
