#pragma once
// ${VAR} and ${VAR:-default} substitution in config values. "$$" stands for a literal "$".

#include "config/load.hpp"

#include <string>
#include <string_view>
#include <variant>

namespace wk::config {

struct subst_error {
  std::string reason;  // e.g. "environment variable WK_PORT is not set"
};

// Returns the value with every reference replaced, or the first problem found: an unset
// variable without a default, an unterminated "${", or an invalid variable name.
std::variant<std::string, subst_error> substitute_env(std::string_view value,
                                                      const env_lookup& env);

}  // namespace wk::config
