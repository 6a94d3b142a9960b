#include "core/host_pattern.hpp"

#include "core/ascii.hpp"

namespace wk::core {

bool wildcard_matches(std::string_view pattern, std::string_view host) noexcept {
  const std::string_view suffix = wildcard_suffix(host);
  return pattern.starts_with("*.") && !suffix.empty() && suffix == pattern.substr(1);
}

bool wildcard_matches_ignoring_case(std::string_view pattern, std::string_view host) noexcept {
  const std::string_view suffix = wildcard_suffix(host);
  return pattern.starts_with("*.") && !suffix.empty() && iequals(suffix, pattern.substr(1));
}

bool host_pattern_matches(std::string_view pattern, std::string_view host) noexcept {
  return pattern == "*" || pattern == host || wildcard_matches(pattern, host);
}

}  // namespace wk::core
