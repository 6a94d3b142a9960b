#pragma once
// What to do with a request on the validation route: the tokens of the config (and the token
// files of validation.static_dir, read on the main thread when a config is loaded or reloaded),
// and the pure decision for one (domain, file). See DESIGN.md section 1 for the four modes.

#include "config/config.hpp"

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wk::validation {

enum class action_kind {
  forward,    // reverse-proxy to the CloudFront routing endpoint
  redirect,   // local 301/302/307/308 to the token's RedirectTo
  fetch,      // reverse-proxy to the token's RedirectTo
  serve,      // local 200 with the token file
  not_found,  // local 404 (unknown token, unknown_token: not_found)
  origin      // not ours after all: the origin gets the request, untouched
};

std::string_view name_of(action_kind k);
std::string_view name_of(config::validation_mode m);

// Orders (domain, file) keys and finds them by a pair of views: a lookup on the data path
// builds no key strings.
struct domain_file_less {
  using is_transparent = void;
  template <class A, class B> bool operator()(const A& a, const B& b) const {
    return std::pair<std::string_view, std::string_view>(a.first, a.second) <
           std::pair<std::string_view, std::string_view>(b.first, b.second);
  }
};

// Token files read from validation.static_dir: <dir>/<domain>/<file> and <dir>/<file>.
// Only regular files (symlinks are followed only when they stay inside the directory) with a
// safe name and at most max_file_bytes; everything else is skipped with a warning. Hidden
// names (starting with ".", e.g. an editor's ".x.txt.swp") are never loaded nor found, nor are
// files reached through a hidden directory: a request for one gets the unknown-token action.
struct static_files {
  static constexpr std::size_t max_file_bytes = 64 * 1024;
  static constexpr std::size_t max_files = 10'000;
  std::map<std::pair<std::string, std::string>, std::string, domain_file_less>
      files;  // (domain|"", file)

  // Reads `dir` (empty: nothing). `warnings` gets one line per skipped entry.
  static static_files load(const std::string& dir, std::vector<std::string>& warnings);
  const std::string* find(std::string_view domain, std::string_view file) const;
};

// The tokens and files of one config snapshot, indexed for the data path. Immutable.
class token_table {
public:
  token_table() = default;
  token_table(const config::config& cfg, static_files files);

  const config::token* find(std::string_view domain, std::string_view file) const;
  bool has_tokens(std::string_view domain) const;
  const std::string* static_file(std::string_view domain, std::string_view file) const;
  config::validation_mode mode_for(std::string_view domain) const;

private:
  std::map<std::pair<std::string, std::string>, const config::token*, domain_file_less> tokens_;
  std::map<std::string, std::size_t, std::less<>> per_domain_;
  const config::validation_route* route_ = nullptr;
  static_files files_;
};

struct action {
  action_kind kind = action_kind::forward;
  config::validation_mode mode = config::validation_mode::forward;
  const config::token* token = nullptr;  // the known token for (domain, file), if any
  unsigned status = 0;                   // redirect, serve, not_found
  const std::string* body = nullptr;     // serve
};

// The decision for a GET/HEAD of `file` under the prefix on allow-listed `domain`:
// - a domain with tokens diverts only its token files; any other file gets
//   validation.unknown_token (origin by default: other CAs use the same folder);
// - forward: to CloudFront; redirect / fetch: need the token (its RedirectTo);
// - static: the token's inline content, else a file from static_dir; none: unknown_token.
// `table` must outlive the returned pointers.
action plan(const token_table& table, const config::validation_route& route,
            std::string_view domain, std::string_view file);

}  // namespace wk::validation
