#pragma once
// Reading and validating a config file. This is the only component that includes yaml-cpp.

#include "config/config.hpp"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wk::config {

// One problem in a config file. `line` and `column` are 1-based; 0 when unknown (e.g. the file
// cannot be read). `key` is the dotted path, e.g. "timeouts.connect" or "listen[1]".
struct error {
  std::string file;
  int line = 0;
  int column = 0;
  std::string key;
  std::string reason;

  // "FILE:LINE:COLUMN: KEY: REASON" (the parts that are known).
  [[nodiscard]] std::string to_string() const;
};

// Looks up an environment variable; std::nullopt when unset.
using env_lookup = std::function<std::optional<std::string>(std::string_view)>;

// The process environment (getenv).
env_lookup process_env();

struct load_result {
  std::optional<config> cfg;  // set only when errors is empty
  std::vector<error> errors;  // every problem found, in file order
};

// Parses YAML text. `file` is only used in messages and stored in config::file.
// Never throws for bad input: every problem is an entry in errors.
load_result load_string(std::string_view text, std::string_view file, const env_lookup& env);

// Parses one file of tokens_dir ({tenant, domains, tokens}) on its own, with the same rules as
// when the config reads it (`prefix`: validation.prefix). The result's tokens and
// validation.domains are the file's; nothing else in it is meaningful.
load_result load_tenant_string(std::string_view text, std::string_view file,
                               std::string_view prefix, const env_lookup& env);

// Reads and parses a file (errors name the file; an unreadable file is one error).
load_result load_file(const std::string& path, const env_lookup& env);

}  // namespace wk::config
