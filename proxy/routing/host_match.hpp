#pragma once
// Host header handling and the tenant allow-list.

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wk::routing {

// Normalizes a Host header value or absolute-form authority: lower-case, port removed, one
// trailing dot removed, IPv6 brackets removed. std::nullopt when it is not a syntactically valid
// host ("reg-name" letters/digits/-/. or an IP literal) with an optional numeric port.
std::optional<std::string> normalize_host(std::string_view value);
// The same into `out`, reusing its capacity (the per-request path); false when invalid (`out`
// then holds nothing useful).
bool normalize_host(std::string_view value, std::string& out);

// The allow-list of tenant domains: exact names, "*.example.com" (exactly one more label), or
// "*" (any host). Patterns are compared case-insensitively; hosts must already be normalized.
class host_allow_list {
public:
  host_allow_list() = default;
  explicit host_allow_list(const std::vector<std::string>& patterns);

  [[nodiscard]] bool allows(std::string_view normalized_host) const;
  // Whether the host is one of the exact names listed (not matched by a pattern): the names
  // metrics label by themselves. A binary search, whatever the number of tenants.
  [[nodiscard]] bool lists(std::string_view normalized_host) const {
    return std::binary_search(exact_.begin(), exact_.end(), normalized_host);
  }

private:
  std::vector<std::string> exact_;      // sorted
  std::vector<std::string> wildcards_;  // "*.example.com"
  bool any_ = false;
};

}  // namespace wk::routing
