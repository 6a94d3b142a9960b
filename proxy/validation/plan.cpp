#include "validation/plan.hpp"

#include "core/host_pattern.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

namespace wk::validation {

namespace fs = std::filesystem;

namespace {

bool is_safe_name(std::string_view s) {
  if (s.empty() || s == "." || s == "..") {
    return false;
  }
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

// ".hidden", ".x.txt.swp" (an editor's swap file: the content of x.txt while it is edited),
// ".git": whatever lies in static_dir, a name starting with "." is never a token file and never
// served. ACM's file names never start with one.
bool is_hidden(std::string_view name) {
  return name.starts_with('.');
}

// True when the real path of a file, below `root`, passes through a hidden directory or is a
// hidden file (a symbolic link with a visible name may point there).
bool has_hidden_component(const fs::path& root, const fs::path& real) {
  for (const fs::path& part : real.lexically_relative(root)) {
    if (is_hidden(part.native())) {
      return true;
    }
  }
  return false;
}

bool is_domain_dir(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') {
    return false;
  }
  for (char c : s) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
    if (!ok) {
      return false;
    }
  }
  return true;
}

bool inside(const fs::path& root, const fs::path& p) {
  auto r = root.native();
  if (!r.ends_with('/')) {
    r += '/';
  }
  return p.native().starts_with(r);
}

// Reads the regular files directly in `dir` into `out` under `domain`.
void load_dir(const fs::path& root, const fs::path& dir, const std::string& domain,
              static_files& out, std::vector<std::string>& warnings) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    std::error_code sec;
    if (domain.empty() && it->is_directory(sec)) {
      continue;  // per-domain directories are read by the caller
    }
    if (is_hidden(name)) {
      warnings.push_back("static_dir: skipped " + p.string() +
                         ": a hidden file (the name starts with \".\"), never served");
      continue;
    }
    if (!is_safe_name(name)) {
      warnings.push_back("static_dir: skipped " + p.string() + ": not a token file name");
      continue;
    }
    const fs::path real = fs::canonical(p, sec);
    if (sec || !inside(root, real)) {
      warnings.push_back("static_dir: skipped " + p.string() + ": points outside the directory");
      continue;
    }
    if (has_hidden_component(root, real)) {
      warnings.push_back("static_dir: skipped " + p.string() +
                         ": points to a hidden file or directory, never served");
      continue;
    }
    if (!fs::is_regular_file(real, sec)) {
      warnings.push_back("static_dir: skipped " + p.string() + ": not a regular file");
      continue;
    }
    const auto size = fs::file_size(real, sec);
    if (sec || size > static_files::max_file_bytes) {
      warnings.push_back("static_dir: skipped " + p.string() + ": larger than 64 KiB");
      continue;
    }
    if (out.files.size() >= static_files::max_files) {
      warnings.emplace_back("static_dir: more than 10000 files; the rest are ignored");
      return;
    }
    std::ifstream in(real, std::ios::binary);
    std::string body{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (!in.good() && !in.eof()) {
      warnings.push_back("static_dir: cannot read " + p.string());
      continue;
    }
    out.files[{domain, name}] = std::move(body);
  }
  if (ec) {
    warnings.push_back("static_dir: cannot list " + dir.string() + ": " + ec.message());
  }
}

action unknown(const config::validation_route& route, action a) {
  if (route.unknown_token == config::unknown_token_action::not_found) {
    a.kind = action_kind::not_found;
    a.status = 404;
  } else {
    a.kind = action_kind::origin;
  }
  return a;
}

}  // namespace

std::string_view name_of(action_kind k) {
  switch (k) {
  case action_kind::forward:
    return "forward";
  case action_kind::redirect:
    return "redirect";
  case action_kind::fetch:
    return "fetch";
  case action_kind::serve:
    return "static";
  case action_kind::not_found:
    return "not_found";
  case action_kind::origin:
    return "origin";
  }
  return "forward";
}

std::string_view name_of(config::validation_mode m) {
  switch (m) {
  case config::validation_mode::forward:
    return "forward";
  case config::validation_mode::redirect:
    return "redirect";
  case config::validation_mode::fetch:
    return "fetch";
  case config::validation_mode::static_files:
    return "static";
  }
  return "forward";
}

static_files static_files::load(const std::string& dir, std::vector<std::string>& warnings) {
  static_files out;
  if (dir.empty()) {
    return out;
  }
  std::error_code ec;
  const fs::path root = fs::canonical(dir, ec);
  if (ec) {
    warnings.push_back("static_dir: cannot open " + dir + ": " + ec.message());
    return out;
  }
  load_dir(root, root, "", out, warnings);
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code sec;
    const std::string name = it->path().filename().string();
    if (!it->is_directory(sec)) {
      continue;
    }
    if (is_hidden(name)) {
      warnings.push_back("static_dir: skipped " + it->path().string() +
                         ": a hidden directory (the name starts with \".\"), never served");
      continue;
    }
    if (!is_domain_dir(name)) {
      warnings.push_back("static_dir: skipped " + it->path().string() +
                         ": not a lower-case domain name");
      continue;
    }
    const fs::path real = fs::canonical(it->path(), sec);
    if (sec || !inside(root, real)) {
      warnings.push_back("static_dir: skipped " + it->path().string() +
                         ": points outside the directory");
      continue;
    }
    load_dir(root, real, name, out, warnings);
  }
  return out;
}

const std::string* static_files::find(std::string_view domain, std::string_view file) const {
  if (is_hidden(file)) {
    return nullptr;  // never loaded; also never served from a table filled by other means
  }
  if (auto it = files.find(std::pair(domain, file)); it != files.end()) {
    return &it->second;
  }
  if (auto it = files.find(std::pair(std::string_view(), file)); it != files.end()) {
    return &it->second;
  }
  return nullptr;
}

token_table::token_table(const config::config& cfg, static_files files)
    : route_(&cfg.validation), files_(std::move(files)) {
  for (const auto& t : cfg.tokens) {
    tokens_[{t.domain, t.file}] = &t;
    ++per_domain_[t.domain];
  }
}

const config::token* token_table::find(std::string_view domain, std::string_view file) const {
  auto it = tokens_.find(std::pair(domain, file));
  return it == tokens_.end() ? nullptr : it->second;
}

bool token_table::has_tokens(std::string_view domain) const {
  return per_domain_.find(domain) != per_domain_.end();
}

const std::string* token_table::static_file(std::string_view domain, std::string_view file) const {
  return files_.find(domain, file);
}

config::validation_mode token_table::mode_for(std::string_view domain) const {
  if (route_ == nullptr) {
    return config::validation_mode::forward;
  }
  // An exact name wins over a pattern; otherwise the first matching pattern in file order.
  for (const auto& m : route_->modes) {
    if (m.pattern == domain) {
      return m.mode;
    }
  }
  for (const auto& m : route_->modes) {
    if (core::host_pattern_matches(m.pattern, domain)) {
      return m.mode;
    }
  }
  return route_->mode;
}

action plan(const token_table& table, const config::validation_route& route,
            std::string_view domain, std::string_view file) {
  action a;
  a.mode = table.mode_for(domain);
  a.token = table.find(domain, file);
  if (a.token == nullptr && table.has_tokens(domain)) {
    return unknown(route, a);
  }
  switch (a.mode) {
  case config::validation_mode::forward:
    a.kind = action_kind::forward;
    return a;
  case config::validation_mode::redirect:
    if (a.token == nullptr) {
      return unknown(route, a);
    }
    a.kind = action_kind::redirect;
    a.status = route.redirect_status;
    return a;
  case config::validation_mode::fetch:
    if (a.token == nullptr) {
      return unknown(route, a);
    }
    a.kind = action_kind::fetch;
    return a;
  case config::validation_mode::static_files:
    if (a.token != nullptr && a.token->has_content) {
      a.body = &a.token->content;
    } else {
      a.body = table.static_file(domain, file);
    }
    if (a.body == nullptr) {
      return unknown(route, a);
    }
    a.kind = action_kind::serve;
    a.status = 200;
    return a;
  }
  return a;
}

}  // namespace wk::validation
