#include "config/env_subst.hpp"

namespace wk::config {

namespace {

bool is_name_start(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

bool is_name_char(char c) {
  return is_name_start(c) || (c >= '0' && c <= '9');
}

bool is_valid_name(std::string_view name) {
  if (name.empty() || !is_name_start(name.front())) {
    return false;
  }
  for (char c : name) {
    if (!is_name_char(c)) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::variant<std::string, subst_error> substitute_env(std::string_view value,
                                                      const env_lookup& env) {
  std::string out;
  out.reserve(value.size());
  std::size_t i = 0;
  while (i < value.size()) {
    const char c = value[i];
    const bool has_next = i + 1 < value.size();
    if (c != '$' || !has_next || (value[i + 1] != '$' && value[i + 1] != '{')) {
      out += c;  // a lone '$' (e.g. "$HOME" or a trailing '$') is literal
      ++i;
      continue;
    }
    if (value[i + 1] == '$') {
      out += '$';
      i += 2;
      continue;
    }
    // "${NAME}" or "${NAME:-default}"; the default is literal text up to the first '}'.
    const std::size_t close = value.find('}', i + 2);
    if (close == std::string_view::npos) {
      return subst_error{"unterminated \"${\" (missing \"}\")"};
    }
    const std::string_view body = value.substr(i + 2, close - (i + 2));
    const std::size_t sep = body.find(":-");
    const std::string_view name = body.substr(0, sep);
    if (!is_valid_name(name)) {
      return subst_error{"invalid environment variable name \"" + std::string(name) + "\""};
    }
    std::optional<std::string> found = env(name);
    if (sep != std::string_view::npos) {
      // As in POSIX sh, ":-" also applies when the variable is set but empty.
      if (!found || found->empty()) {
        found = std::string(body.substr(sep + 2));
      }
    } else if (!found) {
      return subst_error{"environment variable " + std::string(name) + " is not set"};
    }
    out += *found;
    i = close + 1;
  }
  return out;
}

}  // namespace wk::config
