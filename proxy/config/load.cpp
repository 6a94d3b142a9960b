// Why this file is over 600 lines: it is the one loader of the configuration schema. Every
// section (listen, upstreams, validation, tokens, limits, admin, logs) is a short loader:: member
// that shares the walker's state: the key path for messages, the YAML marks for file:line, the
// set of unknown keys and the first error. Splitting the sections into files would export that
// private state in a header for no reader's benefit; the sections are in schema order instead.

#include "config/load.hpp"

#include "core/ascii.hpp"
#include "core/host_pattern.hpp"

#include "config/duration.hpp"
#include "config/env_subst.hpp"
#include "config/upstream_url.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace wk::config {

namespace fs = std::filesystem;

std::string error::to_string() const {
  // "FILE:LINE:COLUMN: KEY: REASON", leaving out what is unknown (a column needs a line).
  std::string location = file;
  if (line > 0) {
    location += (location.empty() ? "" : ":") + std::to_string(line);
    if (column > 0) {
      location += ':' + std::to_string(column);
    }
  }
  std::string out;
  if (!location.empty()) {
    out += location + ": ";
  }
  if (!key.empty()) {
    out += key + ": ";
  }
  out += reason;
  return out;
}

env_lookup process_env() {
  return [](std::string_view name) -> std::optional<std::string> {
    // getenv needs a terminated string; the environment is not modified while loading.
    const char* value = std::getenv(std::string(name).c_str());  // NOLINT(concurrency-mt-unsafe)
    if (value == nullptr) {
      return std::nullopt;
    }
    return std::string(value);
  };
}

namespace {

std::string in_quotes(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

// Decimal digits only, no sign; std::nullopt on anything else or overflow.
std::optional<std::uint64_t> parse_unsigned(std::string_view text) {
  if (text.empty() || text.size() > 19) {
    return std::nullopt;  // 19 digits always fit in 64 bits
  }
  std::uint64_t value = 0;
  for (char c : text) {
    if (!core::is_digit(c)) {
      return std::nullopt;
    }
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return value;
}

// A host name in the validation allow-list: dot-separated labels of 1..63 lower-case letters,
// digits or '-' (no leading or trailing '-'), 253 characters at most, not ending in an all-digit
// label (that would be an IP address, which the CA never validates).
bool is_domain_name(std::string_view name) {
  // The resolver's rules (is_host_name), without upper case or '_' (a tenant domain is stored
  // lower-case and certificates never carry '_').
  return std::none_of(name.begin(), name.end(),
                      [](char c) { return (c >= 'A' && c <= 'Z') || c == '_'; }) &&
         is_host_name(name);
}

// "*" alone, "*.name", or a plain name (already lower-cased).
bool is_domain_pattern(std::string_view pattern) {
  if (pattern == "*") {
    return true;
  }
  if (pattern.starts_with("*.")) {
    pattern.remove_prefix(2);
  }
  return is_domain_name(pattern);
}

// The reason a validation prefix is unusable, or empty when it is fine. The route matches
// normalized paths, so the prefix itself must already be in normal form.
std::string prefix_problem(std::string_view prefix) {
  if (prefix.empty() || prefix.front() != '/' || prefix.back() != '/') {
    return "must start and end with \"/\"";
  }
  for (char c : prefix) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '%' || c == '?' || c == '#' || c == '\\' || u <= 0x20 || u >= 0x7f) {
      return "must not contain \"%\", \"?\", \"#\", \"\\\", spaces or control characters";
    }
  }
  if (prefix.size() > 1) {
    std::size_t start = 1;
    while (start < prefix.size()) {
      const std::size_t end = prefix.find('/', start);
      const std::string_view segment = prefix.substr(start, end - start);
      if (segment.empty()) {
        return "must not contain \"//\"";
      }
      if (segment == "." || segment == "..") {
        return "must not contain \".\" or \"..\" segments";
      }
      start = end + 1;
    }
  }
  return {};
}

const char* type_name(const YAML::Node& node) {
  switch (node.Type()) {
  case YAML::NodeType::Map:
    return "a mapping";
  case YAML::NodeType::Sequence:
    return "a list";
  case YAML::NodeType::Scalar:
    return "a single value";
  default:
    return "nothing";
  }
}

std::string join(const std::vector<std::string_view>& names) {
  std::string out;
  for (std::string_view name : names) {
    if (!out.empty()) {
      out += ", ";
    }
    out += name;
  }
  return out;
}

std::string child(const std::string& prefix, std::string_view name) {
  return prefix.empty() ? std::string(name) : prefix + "." + std::string(name);
}

std::string item(const std::string& prefix, std::size_t index) {
  return prefix + "[" + std::to_string(index) + "]";
}

// A scalar after substitution, with where it came from (for errors found later).
// The allow-list rule (core::host_pattern_matches) over a list of patterns.
bool domain_allowed(const std::vector<std::string>& patterns, std::string_view host) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return core::host_pattern_matches(p, host); });
}

struct located {
  std::string value;
  YAML::Mark mark;
  std::string key;
};

// One pass over a parsed document, filling `cfg_` and collecting every problem in `errors_`.
class loader {
public:
  loader(std::string_view file, const env_lookup& env) : file_(file), env_(env) {}

  void load_document(const YAML::Node& root);
  // A tokens_dir file on its own (tokens import checks what it is about to write).
  void load_tenant_document(const YAML::Node& root, const std::string& stem) {
    load_tenant_file(root, stem);
    check_tokens();
  }
  void fail(const YAML::Mark& mark, std::string key, std::string reason);
  // The same for a problem in another file than the one being read (a token's cross-checks).
  void fail_in(std::string_view file, const YAML::Mark& mark, std::string key, std::string reason);

  config cfg_;
  std::vector<error> errors_;

private:
  using handler = std::function<void(const YAML::Node& value, const std::string& key)>;
  struct field {
    std::string_view name;
    handler on_value;
  };

  // Walks a mapping in file order, dispatching each key to its field; unknown and repeated keys
  // are errors. Returns the names that were present. A null node (a section whose keys are all
  // commented out) counts as an empty mapping.
  std::set<std::string, std::less<>> walk_map(const YAML::Node& node, const std::string& key,
                                              const std::vector<field>& fields);
  bool expect_list(const YAML::Node& node, const std::string& key);
  // The scalar with ${VAR} references replaced; std::nullopt (error recorded) otherwise.
  std::optional<std::string> scalar(const YAML::Node& node, const std::string& key);

  void load_listen(const YAML::Node& node, const std::string& key);
  // The keys of a listener mapping besides address, checked once the mode is known.
  struct listener_options {
    std::optional<located> mode;
    std::optional<located> accept_proxy_from;
    std::vector<cidr> ranges;
    std::optional<located> certificates;
    std::vector<certificate> certs;
    std::optional<located> upstream;
    std::optional<located> sni_routes;
    std::vector<sni_route> routes;
    std::optional<located> on_no_sni;
    std::optional<located> send_proxy_protocol;
  };
  listener_options load_listener_options(const YAML::Node& entry, const std::string& path,
                                         std::optional<YAML::Node>& address);
  void apply_listener_options(listener_options o, listener& l, const std::string& path,
                              const YAML::Mark& mark);
  void load_certificates(const YAML::Node& node, const std::string& key,
                         std::vector<certificate>& out);
  void load_sni_routes(const YAML::Node& node, const std::string& key, std::vector<sni_route>& out);
  std::optional<proxy_protocol> proxy_protocol_of(const located& value);
  void load_upstream(const YAML::Node& node, const std::string& key, upstream& out);
  std::optional<std::vector<std::string>> load_domains(const YAML::Node& node,
                                                       const std::string& key);
  void load_validation(const YAML::Node& node, const std::string& key);
  void load_modes(const YAML::Node& node, const std::string& key);
  void load_tokens(const YAML::Node& node, const std::string& key);
  // tokens_dir: every *.yaml / *.yml file in it, in name order, one tenant each.
  void load_tokens_dir();
  void load_tenant_file(const YAML::Node& root, const std::string& stem);
  void check_tokens();
  std::optional<validation_mode> mode_of(const YAML::Node& node, const std::string& key);
  std::string resolve_path(const std::string& path) const;
  void load_methods(const YAML::Node& node, const std::string& key);
  void load_limits(const YAML::Node& node, const std::string& key);
  void load_duration(const YAML::Node& node, const std::string& key, duration& out,
                     bool zero_ok = false);
  std::optional<std::uint64_t> load_size(const YAML::Node& node, const std::string& key);
  void load_count(const YAML::Node& node, const std::string& key, std::size_t& out,
                  bool zero_ok = false);
  void load_policy(const YAML::Node& node, const std::string& key, forwarded_policy& out);
  void load_workers(const YAML::Node& node, const std::string& key);
  void load_io(const YAML::Node& node, const std::string& key);
  void load_pid_file(const YAML::Node& node, const std::string& key);
  void load_admin(const YAML::Node& node, const std::string& key);
  void load_aws(const YAML::Node& node, const std::string& key);
  void check_admin();
  void load_access_log(const YAML::Node& node, const std::string& key);
  void load_log_output(const YAML::Node& node, const std::string& key, access_log& out);
  // A file that must be readable (relative paths start at the config file's directory);
  // `out` gets the resolved path.
  void check_file(const located& file, std::string& out, std::string_view what);

  // Where to report a problem with `node`. yaml-cpp marks an empty value ("key:") at the next
  // token, often on a later line, so empty values are reported at their key instead.
  YAML::Mark mark_of(const YAML::Node& node) const {
    return node.IsNull() ? key_mark_ : node.Mark();
  }

  std::string_view file_;
  const env_lookup& env_;
  YAML::Mark key_mark_;                        // the key whose value is being read
  std::optional<located> top_domains_;         // where top-level `domains` was
  std::optional<located> validation_domains_;  // where validation.domains was
  std::vector<located> mode_marks_;            // validation.modes entries, for cross-checks
  struct token_source {
    YAML::Mark mark;
    std::string key;
    YAML::Mark from_mark;
    YAML::Mark to_mark;
    YAML::Mark domain_mark;
    std::string_view file;  // the config, or a file of tokens_dir
  };
  std::optional<located> tokens_dir_;      // where tokens_dir was
  std::deque<std::string> file_names_;     // the tokens_dir files read (file_ points into it)
  std::vector<token_source> token_marks_;  // tokens[i], for cross-checks after the walk
  std::vector<std::string> listen_paths_;  // listen[i] as a key, for cross-checks
  std::vector<std::size_t> passthrough_defaults_;  // passthrough listeners without upstream
  std::optional<located> admin_listen_;            // where admin.listen was
};

void loader::fail(const YAML::Mark& mark, std::string key, std::string reason) {
  fail_in(file_, mark, std::move(key), std::move(reason));
}

void loader::fail_in(std::string_view file, const YAML::Mark& mark, std::string key,
                     std::string reason) {
  error e;
  e.file = std::string(file);
  if (!mark.is_null()) {
    e.line = mark.line + 1;
    e.column = mark.column + 1;
  }
  e.key = std::move(key);
  e.reason = std::move(reason);
  errors_.push_back(std::move(e));
}

std::set<std::string, std::less<>> loader::walk_map(const YAML::Node& node, const std::string& key,
                                                    const std::vector<field>& fields) {
  std::set<std::string, std::less<>> seen;
  if (node.IsNull()) {
    return seen;
  }
  if (!node.IsMap()) {
    fail(node.Mark(), key, std::string("expected a mapping, got ") + type_name(node));
    return seen;
  }
  for (const auto& kv : node) {
    const YAML::Node& name_node = kv.first;
    if (!name_node.IsScalar()) {
      fail(name_node.Mark(), key, "keys must be plain names");
      continue;
    }
    const std::string& name = name_node.Scalar();
    const std::string path = child(key, name);
    const auto known =
        std::find_if(fields.begin(), fields.end(), [&](const field& f) { return f.name == name; });
    if (known == fields.end()) {
      std::vector<std::string_view> names;
      for (const field& f : fields) {
        names.push_back(f.name);
      }
      fail(name_node.Mark(), path, "unknown key (expected one of: " + join(names) + ")");
      continue;
    }
    if (!seen.insert(name).second) {
      fail(name_node.Mark(), path, "duplicate key");
      continue;
    }
    key_mark_ = name_node.Mark();
    known->on_value(kv.second, path);
  }
  return seen;
}

bool loader::expect_list(const YAML::Node& node, const std::string& key) {
  if (!node.IsSequence()) {
    fail(mark_of(node), key, std::string("expected a list, got ") + type_name(node));
    return false;
  }
  if (node.size() == 0) {
    fail(node.Mark(), key, "must not be empty");
    return false;
  }
  return true;
}

std::optional<std::string> loader::scalar(const YAML::Node& node, const std::string& key) {
  if (node.IsNull()) {
    fail(mark_of(node), key, "missing value");
    return std::nullopt;
  }
  if (!node.IsScalar()) {
    fail(node.Mark(), key, std::string("expected a single value, got ") + type_name(node));
    return std::nullopt;
  }
  auto result = substitute_env(node.Scalar(), env_);
  if (auto* problem = std::get_if<subst_error>(&result)) {
    fail(node.Mark(), key, std::move(problem->reason));
    return std::nullopt;
  }
  return std::get<std::string>(std::move(result));
}

void loader::load_document(const YAML::Node& root) {
  cfg_.file = std::string(file_);
  if (!root.IsNull() && !root.IsMap()) {
    fail(root.Mark(), "",
         std::string("expected a mapping at the top level, got ") + type_name(root));
    return;
  }

  const std::vector<field> fields{
      {"version",
       [this](const YAML::Node& n, const std::string& k) {
         if (auto v = scalar(n, k)) {
           if (*v != "1") {
             fail(n.Mark(), k, "must be 1, got " + in_quotes(*v));
           }
         }
       }},
      {"listen", [this](const YAML::Node& n, const std::string& k) { load_listen(n, k); }},
      {"origin",
       [this](const YAML::Node& n, const std::string& k) { load_upstream(n, k, cfg_.origin); }},
      {"cloudfront",
       [this](const YAML::Node& n, const std::string& k) { load_upstream(n, k, cfg_.cloudfront); }},
      {"domains",
       [this](const YAML::Node& n, const std::string& k) {
         top_domains_ = located{"", mark_of(n), k};
         if (auto domains = load_domains(n, k)) {
           cfg_.validation.domains = std::move(*domains);
         }
       }},
      {"validation", [this](const YAML::Node& n, const std::string& k) { load_validation(n, k); }},
      {"tokens", [this](const YAML::Node& n, const std::string& k) { load_tokens(n, k); }},
      {"tokens_dir",
       [this](const YAML::Node& n, const std::string& k) {
         if (auto v = scalar(n, k)) {
           tokens_dir_ = located{*v, n.Mark(), k};
         }
       }},
      {"timeouts",
       [this](const YAML::Node& n, const std::string& k) {
         auto& t = cfg_.timeouts;
         const auto set = [this](duration& out) {
           return [this, &out](const YAML::Node& v, const std::string& p) {
             load_duration(v, p, out);
           };
         };
         walk_map(n, k,
                  {{"connect", set(t.connect)},
                   {"header_read", set(t.header_read)},
                   {"idle", set(t.idle)},
                   {"upstream_response", set(t.upstream_response)},
                   {"upstream_idle", set(t.upstream_idle)},
                   {"body_idle", set(t.body_idle)},
                   {"tunnel_idle", set(t.tunnel_idle)}});
       }},
      {"limits", [this](const YAML::Node& n, const std::string& k) { load_limits(n, k); }},
      {"headers",
       [this](const YAML::Node& n, const std::string& k) {
         auto& h = cfg_.headers;
         walk_map(n, k,
                  {{"x_forwarded_for",
                    [this, &h](const YAML::Node& v, const std::string& p) {
                      load_policy(v, p, h.x_forwarded_for);
                    }},
                   {"x_forwarded_proto", [this, &h](const YAML::Node& v, const std::string& p) {
                      load_policy(v, p, h.x_forwarded_proto);
                    }}});
       }},
      {"dns",
       [this](const YAML::Node& n, const std::string& k) {
         walk_map(n, k, {{"refresh", [this](const YAML::Node& v, const std::string& p) {
                            load_duration(v, p, cfg_.dns.refresh);
                          }}});
       }},
      {"shutdown",
       [this](const YAML::Node& n, const std::string& k) {
         auto& sd = cfg_.shutdown;
         walk_map(n, k,
                  {{"accept_grace",
                    [this, &sd](const YAML::Node& v, const std::string& p) {
                      load_duration(v, p, sd.accept_grace, true);
                    }},
                   {"drain_timeout",
                    [this, &sd](const YAML::Node& v, const std::string& p) {
                      load_duration(v, p, sd.drain_timeout);
                    }},
                   {"upgrade_timeout", [this, &sd](const YAML::Node& v, const std::string& p) {
                      load_duration(v, p, sd.upgrade_timeout);
                    }}});
       }},
      {"access_log", [this](const YAML::Node& n, const std::string& k) { load_access_log(n, k); }},
      {"log_level",
       [this](const YAML::Node& n, const std::string& k) {
         if (auto v = scalar(n, k)) {
           if (*v == "debug") {
             cfg_.log_level = log_level::debug;
           } else if (*v == "info") {
             cfg_.log_level = log_level::info;
           } else if (*v == "warn") {
             cfg_.log_level = log_level::warn;
           } else if (*v == "error") {
             cfg_.log_level = log_level::error;
           } else {
             fail(n.Mark(), k, "expected debug, info, warn or error, got " + in_quotes(*v));
           }
         }
       }},
      {"workers", [this](const YAML::Node& n, const std::string& k) { load_workers(n, k); }},
      {"io", [this](const YAML::Node& n, const std::string& k) { load_io(n, k); }},
      {"pid_file", [this](const YAML::Node& n, const std::string& k) { load_pid_file(n, k); }},
      {"admin", [this](const YAML::Node& n, const std::string& k) { load_admin(n, k); }},
      {"aws", [this](const YAML::Node& n, const std::string& k) { load_aws(n, k); }},
  };
  const auto seen = walk_map(root, "", fields);

  // Missing keys have no line of their own: report them where the document starts.
  YAML::Mark where = root.Mark();
  if (where.is_null() || root.IsNull()) {
    where = YAML::Mark{};  // line 1, column 1
  }
  for (std::string_view required : {"version", "listen", "origin", "cloudfront"}) {
    if (!seen.contains(required)) {
      fail(where, std::string(required), "missing required key");
    }
  }
  if (!top_domains_ && !validation_domains_ && !cfg_.aws.enabled) {
    // With aws: the tenants' domains come from the CloudFront API.
    fail(where, "domains", "missing required key");
  }
  if (top_domains_ && validation_domains_) {
    // Report at the later of the two, so the message points at the redundant one.
    const located& later = (validation_domains_->mark.pos > top_domains_->mark.pos)
                               ? *validation_domains_
                               : *top_domains_;
    fail(later.mark, later.key,
         "the allow-list is given twice (domains and validation.domains); keep one");
  }
  load_tokens_dir();
  check_tokens();
  check_admin();
  for (std::size_t index : passthrough_defaults_) {
    // TLS traffic goes where it went before: the origin's host, on the HTTPS port.
    upstream& u = cfg_.listen[index].passthrough;
    const auto pp = u.send_proxy_protocol;
    const std::string& host = cfg_.origin.host;
    u.url = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":443";
    u.host = host;
    u.port = 443;
    u.send_proxy_protocol = pp;
  }
}

void loader::load_aws(const YAML::Node& node, const std::string& key) {
  auto& a = cfg_.aws;
  a.enabled = true;
  const auto set = [this](duration& out) {
    return [this, &out](const YAML::Node& v, const std::string& p) { load_duration(v, p, out); };
  };
  const auto seen = walk_map(
      node, key,
      {{"tenants",
        [this, &a](const YAML::Node& v, const std::string& p) {
          if (!expect_list(v, p)) {
            return;
          }
          if (v.size() > aws_api::max_tenants) {
            fail(v.Mark(), p,
                 "more than " + std::to_string(aws_api::max_tenants) +
                     " tenants; use several "
                     "wkproxy instances or tokens_dir");
            return;
          }
          for (std::size_t i = 0; i < v.size(); ++i) {
            key_mark_ = v.Mark();
            const std::string path = item(p, i);
            auto text = scalar(v[i], path);
            if (!text) {
              continue;
            }
            // Ids, names and ARNs of distribution tenants: printable ASCII without spaces.
            const bool printable =
                !text->empty() && std::all_of(text->begin(), text->end(), [](char c) {
                  return c > ' ' && c < 0x7f && c != '"' && c != '\\';
                });
            if (!printable || text->size() > 2048) {
              fail(v[i].Mark(), path,
                   "invalid tenant " + in_quotes(*text) +
                       " (expected a distribution tenant id, name or ARN)");
            } else if (std::find(a.tenants.begin(), a.tenants.end(), *text) != a.tenants.end()) {
              fail(v[i].Mark(), path, "duplicate tenant " + in_quotes(*text));
            } else {
              a.tenants.push_back(*text);
            }
          }
        }},
       {"poll_interval", set(a.poll_interval)},
       {"request_timeout", set(a.request_timeout)},
       {"quiet_period", set(a.quiet_period)},
       {"profile", [this, &a](const YAML::Node& v, const std::string& p) {
          if (auto text = scalar(v, p)) {
            a.profile = *text;
          }
        }}});
  if (!seen.contains("tenants")) {
    fail(node.Mark(), key + ".tenants", "missing required key");
  }
  if (a.poll_interval.count() < 1000) {
    fail(node.Mark(), key + ".poll_interval",
         "must be at least 1s (CloudFront throttles callers that poll faster)");
  }
}

void loader::load_admin(const YAML::Node& node, const std::string& key) {
  auto& a = cfg_.admin;
  a.enabled = true;
  walk_map(node, key,
           {{"listen",
             [this, &a](const YAML::Node& v, const std::string& p) {
               auto text = scalar(v, p);
               if (!text) {
                 return;
               }
               auto parsed = parse_listen_address(*text);
               if (auto* reason = std::get_if<std::string>(&parsed)) {
                 fail(v.Mark(), p, "invalid listen address " + in_quotes(*text) + ": " + *reason);
                 return;
               }
               const auto& l = std::get<listener>(parsed);
               a.address = l.address;
               a.host = l.host;
               a.port = l.port;
               admin_listen_ = located{*text, v.Mark(), p};
             }},
            {"token", [this, &a](const YAML::Node& v, const std::string& p) {
               if (auto text = scalar(v, p)) {
                 a.token = *text;
               }
             }}});
}

// The admin listener is never a public one, and never reachable from outside without a token.
void loader::check_admin() {
  const auto& a = cfg_.admin;
  if (!a.enabled || !admin_listen_) {
    return;
  }
  const bool loopback = a.host.starts_with("127.") || a.host == "::1";
  if (!loopback && a.token.empty()) {
    fail(admin_listen_->mark, admin_listen_->key,
         "an admin listener on a non-loopback address needs admin.token");
  }
  for (std::size_t i = 0; i < cfg_.listen.size(); ++i) {
    const auto& l = cfg_.listen[i];
    if (a.port != 0 && l.port == a.port &&
        (l.host == a.host || l.host == "0.0.0.0" || l.host == "::")) {
      fail(admin_listen_->mark, admin_listen_->key,
           "must differ from the public listener " + in_quotes(l.address) + " (" +
               listen_paths_[i] + ")");
    }
  }
}

std::string loader::resolve_path(const std::string& path) const {
  fs::path p(path);
  if (p.is_relative()) {
    p = fs::path(std::string(file_)).parent_path() / p;
  }
  return p.lexically_normal().string();
}

std::optional<validation_mode> loader::mode_of(const YAML::Node& node, const std::string& key) {
  auto text = scalar(node, key);
  if (!text) {
    return std::nullopt;
  }
  if (*text == "forward") {
    return validation_mode::forward;
  }
  if (*text == "redirect") {
    return validation_mode::redirect;
  }
  if (*text == "fetch") {
    return validation_mode::fetch;
  }
  if (*text == "static") {
    return validation_mode::static_files;
  }
  fail(node.Mark(), key, "expected forward, redirect, fetch or static, got " + in_quotes(*text));
  return std::nullopt;
}

void loader::load_modes(const YAML::Node& node, const std::string& key) {
  if (!node.IsMap()) {
    fail(mark_of(node), key,
         std::string("expected a mapping of domain: mode, got ") + type_name(node));
    return;
  }
  for (const auto& entry : node) {
    auto name = scalar(entry.first, key);
    if (!name) {
      continue;
    }
    const std::string path = child(key, *name);
    const std::string lowered = core::to_lower(*name);
    if (!is_domain_pattern(lowered)) {
      fail(entry.first.Mark(), path, "invalid domain " + in_quotes(*name));
      continue;
    }
    if (auto mode = mode_of(entry.second, path)) {
      cfg_.validation.modes.push_back(domain_mode{lowered, *mode});
      mode_marks_.push_back(located{lowered, entry.first.Mark(), path});
    }
  }
}

void loader::load_tokens(const YAML::Node& node, const std::string& key) {
  if (!expect_list(node, key)) {
    return;
  }
  for (std::size_t i = 0; i < node.size(); ++i) {
    const YAML::Node entry = node[i];
    const std::string path = item(key, i);
    token t;
    token_source src{entry.Mark(), path, {}, {}, {}, file_};
    const auto seen = walk_map(entry, path,
                               {{"domain",
                                 [&](const YAML::Node& n, const std::string& k) {
                                   if (auto v = scalar(n, k)) {
                                     t.domain = *v;
                                     src.domain_mark = n.Mark();
                                   }
                                 }},
                                {"redirect_from",
                                 [&](const YAML::Node& n, const std::string& k) {
                                   if (auto v = scalar(n, k)) {
                                     t.redirect_from = *v;
                                     src.from_mark = n.Mark();
                                   }
                                 }},
                                {"redirect_to",
                                 [&](const YAML::Node& n, const std::string& k) {
                                   if (auto v = scalar(n, k)) {
                                     t.redirect_to = *v;
                                     src.to_mark = n.Mark();
                                   }
                                 }},
                                {"tenant",
                                 [&](const YAML::Node& n, const std::string& k) {
                                   if (auto v = scalar(n, k)) {
                                     t.tenant = *v;
                                   }
                                 }},
                                {"content", [&](const YAML::Node& n, const std::string& k) {
                                   if (auto v = scalar(n, k)) {
                                     t.content = *v;
                                     t.has_content = true;
                                   }
                                 }}});
    if (!entry.IsMap()) {
      continue;
    }
    bool complete = true;
    for (std::string_view required : {"domain", "redirect_from", "redirect_to"}) {
      if (!seen.contains(required)) {
        fail(entry.Mark(), child(path, required), "missing required key");
        complete = false;
      }
    }
    if (complete) {
      cfg_.tokens.push_back(std::move(t));
      token_marks_.push_back(std::move(src));
    }
  }
}

void loader::load_tokens_dir() {
  if (!tokens_dir_) {
    return;
  }
  const std::string dir = resolve_path(tokens_dir_->value);
  cfg_.tokens_dir = dir;
  std::error_code ec;
  std::vector<fs::path> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& f = it->path();
    const std::string ext = f.extension().string();
    std::error_code type_ec;
    if ((ext == ".yaml" || ext == ".yml") && !f.filename().string().starts_with(".") &&
        it->is_regular_file(type_ec)) {
      files.push_back(f);
    }
  }
  if (ec) {
    fail(tokens_dir_->mark, tokens_dir_->key,
         "cannot read the directory " + in_quotes(dir) + ": " + ec.message());
    return;
  }
  std::sort(files.begin(), files.end());
  const std::string_view config_file = file_;
  for (const fs::path& f : files) {
    file_names_.push_back(f.string());
    file_ = file_names_.back();
    std::ifstream in(f, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in) {
      fail(YAML::Mark::null_mark(), "", std::string("cannot read file: ") + std::strerror(errno));
      continue;
    }
    try {
      load_tenant_file(YAML::Load(text.str()), f.stem().string());
    } catch (const YAML::Exception& e) {
      fail(e.mark, "", "YAML syntax error: " + e.msg);
    }
  }
  file_ = config_file;
}

// One file of tokens_dir: {tenant, domains, tokens}. Its domains join the allow-list; its
// tokens without a tenant of their own get the file's (default: the file name without .yaml).
void loader::load_tenant_file(const YAML::Node& root, const std::string& stem) {
  if (!root.IsMap()) {
    fail(root.Mark(), "",
         std::string("expected a mapping with tenant, domains and tokens, got ") + type_name(root));
    return;
  }
  std::string tenant = stem;
  const std::size_t first = cfg_.tokens.size();
  walk_map(root, "",
           {{"tenant",
             [&](const YAML::Node& n, const std::string& k) {
               if (auto v = scalar(n, k)) {
                 tenant = *v;
               }
             }},
            {"domains",
             [&](const YAML::Node& n, const std::string& k) {
               if (auto domains = load_domains(n, k)) {
                 auto& allowed = cfg_.validation.domains;
                 for (std::string& d : *domains) {
                   if (std::find(allowed.begin(), allowed.end(), d) == allowed.end()) {
                     allowed.push_back(std::move(d));
                   }
                 }
               }
             }},
            {"tokens", [&](const YAML::Node& n, const std::string& k) { load_tokens(n, k); }}});
  for (std::size_t i = first; i < cfg_.tokens.size(); ++i) {
    if (cfg_.tokens[i].tenant.empty()) {
      cfg_.tokens[i].tenant = tenant;
    }
  }
}

// Token URLs depend on validation.prefix and the allow-list, which may come later in the file.
void loader::check_tokens() {
  const auto& allowed = cfg_.validation.domains;
  std::vector<token> kept;
  for (std::size_t i = 0; i < cfg_.tokens.size(); ++i) {
    token& t = cfg_.tokens[i];
    const token_source& src = token_marks_[i];
    const std::string domain = core::to_lower(t.domain);
    bool ok = true;
    if (domain.starts_with("*.") || domain == "*") {
      fail_in(src.file, src.domain_mark, child(src.key, "domain"),
              "wildcard domains cannot be validated over HTTP; use DNS validation for " +
                  in_quotes(t.domain));
      ok = false;
    } else if (!is_domain_name(domain)) {
      fail_in(src.file, src.domain_mark, child(src.key, "domain"),
              "invalid domain " + in_quotes(t.domain));
      ok = false;
    } else if (!domain_allowed(allowed, domain)) {
      fail_in(src.file, src.domain_mark, child(src.key, "domain"),
              in_quotes(domain) + " is not in the domains allow-list");
      ok = false;
    }
    const auto from = parse_redirect_from(t.redirect_from, cfg_.validation.prefix);
    if (const auto* reason = std::get_if<std::string>(&from)) {
      fail_in(src.file, src.from_mark, child(src.key, "redirect_from"), *reason);
      ok = false;
    } else {
      const auto& parts = std::get<redirect_from_parts>(from);
      if (ok && parts.domain != domain) {
        fail_in(src.file, src.from_mark, child(src.key, "redirect_from"),
                "the host must be the token's domain " + in_quotes(domain) + ", got " +
                    in_quotes(parts.domain));
        ok = false;
      }
      t.file = parts.file;
      t.redirect_from = with_default_scheme(t.redirect_from, "http");  // AWS may omit it
    }
    const auto to = parse_redirect_to(t.redirect_to);
    if (const auto* reason = std::get_if<std::string>(&to)) {
      fail_in(src.file, src.to_mark, child(src.key, "redirect_to"), *reason);
      ok = false;
    } else {
      const auto& parts = std::get<redirect_to_parts>(to);
      t.to_host = parts.host;
      t.to_port = parts.port;
      t.to_target = parts.target;
      t.redirect_to = with_default_scheme(t.redirect_to, "https");  // the Location of redirects
    }
    if (!ok) {
      continue;
    }
    t.domain = domain;
    for (const token& other : kept) {
      if (other.domain == t.domain && other.file == t.file) {
        fail_in(src.file, src.mark, src.key, "duplicate token " + in_quotes(t.redirect_from));
        ok = false;
        break;
      }
    }
    if (ok) {
      kept.push_back(std::move(t));
    }
  }
  cfg_.tokens = std::move(kept);
  for (const located& m : mode_marks_) {
    if (!domain_allowed(allowed, m.value) &&
        std::find(allowed.begin(), allowed.end(), m.value) == allowed.end()) {
      fail(m.mark, m.key, in_quotes(m.value) + " is not in the domains allow-list");
    }
  }
}

void loader::load_listen(const YAML::Node& node, const std::string& key) {
  if (!expect_list(node, key)) {
    return;
  }
  std::vector<std::string> paths;
  for (std::size_t i = 0; i < node.size(); ++i) {
    const YAML::Node entry = node[i];
    key_mark_ = node.Mark();  // an empty item ("-" alone) is reported where the list starts
    const std::string path = item(key, i);
    std::optional<YAML::Node> address;
    listener_options options;
    if (entry.IsMap()) {
      options = load_listener_options(entry, path, address);
      if (!address) {
        fail(entry.Mark(), child(path, "address"), "missing required key");
        continue;
      }
    } else if (entry.IsSequence()) {
      fail(entry.Mark(), path, "expected \"IP:PORT\" or a mapping with address, got a list");
      continue;
    }
    // Copies, never assignment: assigning a YAML::Node rebinds the node it refers to in the
    // document.
    const YAML::Node value_node = address ? *address : entry;
    const std::string value_key = address ? child(path, "address") : path;
    const std::optional<std::string> text = scalar(value_node, value_key);
    if (!text) {
      continue;
    }
    auto parsed = parse_listen_address(*text);
    if (auto* reason = std::get_if<std::string>(&parsed)) {
      fail(value_node.Mark(), value_key,
           "invalid listen address " + in_quotes(*text) + ": " + *reason);
      continue;
    }
    auto& l = std::get<listener>(parsed);
    // Port 0 asks the kernel for a fresh port each time, so repeating it is not a conflict.
    const auto same = std::find_if(cfg_.listen.begin(), cfg_.listen.end(), [&](const listener& o) {
      return l.port != 0 && o.port == l.port && o.host == l.host;
    });
    if (same != cfg_.listen.end()) {
      const auto index = static_cast<std::size_t>(same - cfg_.listen.begin());
      fail(value_node.Mark(), value_key,
           "duplicate listen address " + in_quotes(*text) + " (same as " + paths[index] + ")");
      continue;
    }
    apply_listener_options(std::move(options), l, path, entry.Mark());
    cfg_.listen.push_back(std::move(l));
    paths.push_back(value_key);
    listen_paths_.push_back(path);
  }
}

loader::listener_options loader::load_listener_options(const YAML::Node& entry,
                                                       const std::string& path,
                                                       std::optional<YAML::Node>& address) {
  listener_options o;
  const auto keep = [this](std::optional<located>& slot) {
    return [this, &slot](const YAML::Node& v, const std::string& p) {
      if (auto text = scalar(v, p)) {
        slot = located{std::move(*text), v.Mark(), p};
      }
    };
  };
  walk_map(entry, path,
           {{"address", [&](const YAML::Node& v, const std::string&) { address.emplace(v); }},
            {"mode", keep(o.mode)},
            {"accept_proxy_from",
             [&](const YAML::Node& v, const std::string& p) {
               o.accept_proxy_from = located{"", mark_of(v), p};
               if (!expect_list(v, p)) {
                 return;
               }
               for (std::size_t j = 0; j < v.size(); ++j) {
                 const std::string item_key = item(p, j);
                 if (auto text = scalar(v[j], item_key)) {
                   auto range = parse_cidr(*text);
                   if (auto* reason = std::get_if<std::string>(&range)) {
                     fail(v[j].Mark(), item_key, *reason);
                   } else {
                     o.ranges.push_back(std::get<cidr>(std::move(range)));
                   }
                 }
               }
             }},
            {"certificates",
             [&](const YAML::Node& v, const std::string& p) {
               o.certificates = located{"", mark_of(v), p};
               load_certificates(v, p, o.certs);
             }},
            {"upstream", keep(o.upstream)},
            {"sni_routes",
             [&](const YAML::Node& v, const std::string& p) {
               o.sni_routes = located{"", mark_of(v), p};
               load_sni_routes(v, p, o.routes);
             }},
            {"on_no_sni", keep(o.on_no_sni)},
            {"send_proxy_protocol", keep(o.send_proxy_protocol)}});
  return o;
}

void loader::load_certificates(const YAML::Node& node, const std::string& key,
                               std::vector<certificate>& out) {
  if (!expect_list(node, key)) {
    return;
  }
  for (std::size_t i = 0; i < node.size(); ++i) {
    const YAML::Node entry = node[i];
    const std::string path = item(key, i);
    certificate c;
    const auto file = [&](std::string& slot, std::string_view what) {
      return [this, &slot, what](const YAML::Node& v, const std::string& p) {
        if (auto text = scalar(v, p)) {
          check_file(located{std::move(*text), v.Mark(), p}, slot, what);
        }
      };
    };
    const auto seen = walk_map(entry, path,
                               {{"cert", file(c.cert_file, "certificate file")},
                                {"key", file(c.key_file, "key file")},
                                {"ocsp", file(c.ocsp_file, "OCSP response file")}});
    if (!entry.IsMap()) {
      continue;
    }
    bool complete = true;
    for (std::string_view required : {"cert", "key"}) {
      if (!seen.contains(required)) {
        fail(entry.Mark(), child(path, required), "missing required key");
        complete = false;
      }
    }
    if (complete) {
      out.push_back(std::move(c));
    }
  }
}

void loader::load_sni_routes(const YAML::Node& node, const std::string& key,
                             std::vector<sni_route>& out) {
  if (!node.IsMap() || node.size() == 0) {
    fail(mark_of(node), key,
         std::string("expected a mapping of server name: HOST:PORT, got ") +
             (node.IsMap() ? "an empty mapping" : type_name(node)));
    return;
  }
  for (const auto& entry : node) {
    auto name = scalar(entry.first, key);
    if (!name) {
      continue;
    }
    const std::string path = child(key, *name);
    std::string lowered = core::to_lower(*name);
    if (lowered == "*" || !is_domain_pattern(lowered)) {
      fail(entry.first.Mark(), path,
           "expected a server name or *.suffix, got " + in_quotes(*name) +
               " (connections that match no route go to upstream)");
      continue;
    }
    if (std::any_of(out.begin(), out.end(),
                    [&](const sni_route& r) { return r.pattern == lowered; })) {
      fail(entry.first.Mark(), path, "duplicate server name");
      continue;
    }
    auto text = scalar(entry.second, path);
    if (!text) {
      continue;
    }
    auto target = parse_tcp_address(*text);
    if (auto* reason = std::get_if<std::string>(&target)) {
      fail(entry.second.Mark(), path, *reason);
      continue;
    }
    sni_route r;
    r.pattern = std::move(lowered);
    r.target = std::get<upstream>(std::move(target));
    r.target.name = "passthrough:" + r.pattern;
    out.push_back(std::move(r));
  }
}

std::optional<proxy_protocol> loader::proxy_protocol_of(const located& value) {
  if (value.value == "off") {
    return proxy_protocol::off;
  }
  if (value.value == "v1") {
    return proxy_protocol::v1;
  }
  if (value.value == "v2") {
    return proxy_protocol::v2;
  }
  fail(value.mark, value.key, "expected off, v1 or v2, got " + in_quotes(value.value));
  return std::nullopt;
}

void loader::apply_listener_options(listener_options o, listener& l, const std::string& path,
                                    const YAML::Mark& mark) {
  if (o.mode) {
    if (o.mode->value == "http") {
      l.mode = listener_mode::http;
    } else if (o.mode->value == "tls") {
      l.mode = listener_mode::tls;
    } else if (o.mode->value == "passthrough") {
      l.mode = listener_mode::passthrough;
    } else {
      fail(o.mode->mark, o.mode->key,
           "expected http, tls or passthrough, got " + in_quotes(o.mode->value));
      return;
    }
  }
  l.accept_proxy_from = std::move(o.ranges);
  const auto only_for = [this](const std::optional<located>& given, std::string_view mode) {
    if (given) {
      fail(given->mark, given->key, "only applies to a listener with mode: " + std::string(mode));
    }
  };
  if (l.mode == listener_mode::tls) {
    if (!o.certificates) {
      fail(mark, child(path, "certificates"), "missing required key (mode: tls)");
    }
    l.certificates = std::move(o.certs);
  } else {
    only_for(o.certificates, "tls");
  }
  if (l.mode != listener_mode::passthrough) {
    only_for(o.upstream, "passthrough");
    only_for(o.sni_routes, "passthrough");
    only_for(o.on_no_sni, "passthrough");
    only_for(o.send_proxy_protocol, "passthrough (for HTTP, set it on origin or cloudfront)");
    return;
  }
  l.passthrough.name = "passthrough";
  if (o.upstream) {
    auto target = parse_tcp_address(o.upstream->value);
    if (auto* reason = std::get_if<std::string>(&target)) {
      fail(o.upstream->mark, o.upstream->key, *reason);
    } else {
      l.passthrough = std::get<upstream>(std::move(target));
      l.passthrough.name = "passthrough";
    }
  } else {
    passthrough_defaults_.push_back(cfg_.listen.size());  // the origin's host, once it is known
  }
  l.sni_routes = std::move(o.routes);
  if (o.on_no_sni) {
    if (o.on_no_sni->value == "reject") {
      l.reject_without_sni = true;
    } else if (o.on_no_sni->value != "upstream") {
      fail(o.on_no_sni->mark, o.on_no_sni->key,
           "expected upstream or reject, got " + in_quotes(o.on_no_sni->value));
    }
  }
  if (o.send_proxy_protocol) {
    if (auto pp = proxy_protocol_of(*o.send_proxy_protocol)) {
      l.passthrough.send_proxy_protocol = *pp;
      for (auto& r : l.sni_routes) {
        r.target.send_proxy_protocol = *pp;
      }
    }
  }
}

void loader::load_upstream(const YAML::Node& node, const std::string& key, upstream& out) {
  const std::string& name = key;
  std::optional<located> url;
  std::optional<located> sni;
  std::optional<located> verify;
  std::optional<located> ca_file;
  std::optional<located> send_pp;
  const auto keep = [this](std::optional<located>& slot) {
    return [this, &slot](const YAML::Node& v, const std::string& p) {
      if (auto text = scalar(v, p)) {
        slot = located{std::move(*text), v.Mark(), p};
      }
    };
  };
  if (node.IsMap()) {
    const auto seen = walk_map(node, key,
                               {{"url", keep(url)},
                                {"sni", keep(sni)},
                                {"verify", keep(verify)},
                                {"ca_file", keep(ca_file)},
                                {"send_proxy_protocol", keep(send_pp)}});
    if (!seen.contains("url")) {
      fail(node.Mark(), child(key, "url"), "missing required key");
    }
  } else if (node.IsSequence()) {
    fail(node.Mark(), key, "expected a URL or a mapping with url, got a list");
    return;
  } else if (auto text = scalar(node, key)) {
    url = located{std::move(*text), node.Mark(), key};
  }

  // Every field is checked on its own first, so one pass reports all of their problems.
  std::optional<upstream> u;
  if (url) {
    auto parsed = parse_upstream_url(url->value);
    if (auto* reason = std::get_if<std::string>(&parsed)) {
      fail(url->mark, url->key, *reason);
    } else {
      u = std::get<upstream>(std::move(parsed));
      u->name = name;
    }
  }
  std::string sni_value;
  if (sni) {
    sni_value = core::to_lower(sni->value);
    // An empty sni sends no server name at all.
    if (!sni_value.empty() && !is_domain_name(sni_value)) {
      fail(sni->mark, sni->key, "must be a DNS name, got " + in_quotes(sni->value));
    }
  }
  bool verify_value = true;
  if (verify) {
    if (verify->value == "false") {
      verify_value = false;
    } else if (verify->value != "true") {
      fail(verify->mark, verify->key, "expected true or false, got " + in_quotes(verify->value));
    }
  }
  std::string ca_value;
  if (ca_file && !ca_file->value.empty()) {
    check_file(*ca_file, ca_value, "CA file");
  }
  std::optional<proxy_protocol> pp;
  if (send_pp) {
    pp = proxy_protocol_of(*send_pp);
  }
  if (!u) {
    return;
  }
  if (pp) {
    u->send_proxy_protocol = *pp;
  }
  if (!u->tls) {
    for (const auto* tls_only : {&sni, &verify, &ca_file}) {
      if (*tls_only) {
        fail((*tls_only)->mark, (*tls_only)->key, "only applies to an https:// upstream");
      }
    }
    out = std::move(*u);
    return;
  }
  if (sni) {
    u->sni = std::move(sni_value);
  }
  u->verify = verify_value;
  u->ca_file = std::move(ca_value);
  out = std::move(*u);
}

void loader::check_file(const located& file, std::string& out, std::string_view what) {
  // A relative path is taken from the config file's directory, so a config and its files can
  // move together; the stored path is the resolved one.
  fs::path path(file.value);
  if (path.is_relative()) {
    path = fs::path(std::string(file_)).parent_path() / path;
  }
  out = path.string();
  const int fd = ::open(out.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fail(file.mark, file.key,
         "cannot read " + std::string(what) + " " + in_quotes(out) + ": " + std::strerror(errno));
    return;
  }
  struct stat st {};
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  ::close(fd);
  if (!regular) {
    fail(file.mark, file.key,
         "cannot read " + std::string(what) + " " + in_quotes(out) + ": not a regular file");
  }
}

std::optional<std::vector<std::string>> loader::load_domains(const YAML::Node& node,
                                                             const std::string& key) {
  if (!expect_list(node, key)) {
    return std::nullopt;
  }
  std::vector<std::string> domains;
  bool ok = true;
  for (std::size_t i = 0; i < node.size(); ++i) {
    const YAML::Node entry = node[i];
    key_mark_ = node.Mark();  // an empty item ("-" alone) is reported where the list starts
    const std::string path = item(key, i);
    auto text = scalar(entry, path);
    if (!text) {
      ok = false;
      continue;
    }
    std::string lowered = core::to_lower(*text);
    if (!is_domain_pattern(lowered)) {
      fail(entry.Mark(), path,
           "invalid domain " + in_quotes(*text) +
               " (expected a host name, \"*.\" + a host name, or "
               "\"*\")");
      ok = false;
      continue;
    }
    if (std::find(domains.begin(), domains.end(), lowered) != domains.end()) {
      fail(entry.Mark(), path, "duplicate domain " + in_quotes(lowered));
      ok = false;
      continue;
    }
    domains.push_back(std::move(lowered));
  }
  if (!ok) {
    return std::nullopt;
  }
  return domains;
}

void loader::load_validation(const YAML::Node& node, const std::string& key) {
  auto& v = cfg_.validation;
  walk_map(node, key,
           {{"prefix",
             [this, &v](const YAML::Node& n, const std::string& k) {
               if (auto text = scalar(n, k)) {
                 const std::string problem = prefix_problem(*text);
                 if (!problem.empty()) {
                   fail(n.Mark(), k, problem + ", got " + in_quotes(*text));
                   return;
                 }
                 v.prefix = std::move(*text);
               }
             }},
            {"domains",
             [this, &v](const YAML::Node& n, const std::string& k) {
               validation_domains_ = located{"", mark_of(n), k};
               if (auto domains = load_domains(n, k)) {
                 v.domains = std::move(*domains);
               }
             }},
            {"methods", [this](const YAML::Node& n, const std::string& k) { load_methods(n, k); }},
            {"mode",
             [this, &v](const YAML::Node& n, const std::string& k) {
               if (auto mode = mode_of(n, k)) {
                 v.mode = *mode;
               }
             }},
            {"modes", [this](const YAML::Node& n, const std::string& k) { load_modes(n, k); }},
            {"redirect_status",
             [this, &v](const YAML::Node& n, const std::string& k) {
               if (auto text = scalar(n, k)) {
                 if (*text == "301" || *text == "302" || *text == "307" || *text == "308") {
                   v.redirect_status = static_cast<unsigned>(std::stoul(*text));
                 } else {
                   fail(n.Mark(), k, "expected 301, 302, 307 or 308, got " + in_quotes(*text));
                 }
               }
             }},
            {"unknown_token",
             [this, &v](const YAML::Node& n, const std::string& k) {
               if (auto text = scalar(n, k)) {
                 if (*text == "origin") {
                   v.unknown_token = unknown_token_action::origin;
                 } else if (*text == "not_found") {
                   v.unknown_token = unknown_token_action::not_found;
                 } else {
                   fail(n.Mark(), k, "expected origin or not_found, got " + in_quotes(*text));
                 }
               }
             }},
            {"static_dir",
             [this, &v](const YAML::Node& n, const std::string& k) {
               if (auto text = scalar(n, k)) {
                 std::string dir = resolve_path(*text);
                 std::error_code ec;
                 if (!fs::is_directory(dir, ec)) {
                   fail(n.Mark(), k, "not a readable directory: " + in_quotes(dir));
                 } else {
                   v.static_dir = std::move(dir);
                 }
               }
             }},
            {"fetch_ca_file",
             [this, &v](const YAML::Node& n, const std::string& k) {
               if (auto text = scalar(n, k)) {
                 check_file(located{*text, n.Mark(), k}, v.fetch_ca_file, "CA file");
               }
             }},
            {"event_log",
             [this, &v](const YAML::Node& n, const std::string& k) {
               if (auto text = scalar(n, k)) {
                 using out = event_log::output;
                 if (*text == "stdout") {
                   v.events.kind = out::stdout_stream;
                 } else if (*text == "stderr") {
                   v.events.kind = out::stderr_stream;
                 } else if (*text == "off") {
                   v.events.kind = out::off;
                 } else if (text->empty()) {
                   fail(n.Mark(), k, "expected stdout, stderr, off or a file path");
                 } else {
                   v.events.kind = out::file;
                   v.events.path = resolve_path(*text);
                 }
               }
             }},
            {"events_per_domain", [this, &v](const YAML::Node& n, const std::string& k) {
               load_count(n, k, v.events_per_domain);
             }}});
}

void loader::load_methods(const YAML::Node& node, const std::string& key) {
  if (!expect_list(node, key)) {
    return;
  }
  std::vector<std::string> methods;
  bool ok = true;
  for (std::size_t i = 0; i < node.size(); ++i) {
    const YAML::Node entry = node[i];
    key_mark_ = node.Mark();  // an empty item ("-" alone) is reported where the list starts
    const std::string path = item(key, i);
    auto text = scalar(entry, path);
    if (!text) {
      ok = false;
      continue;
    }
    std::string upper;
    for (char c : *text) {
      upper += core::to_upper(c);
    }
    if (!core::is_token(upper)) {
      fail(entry.Mark(), path, "invalid method " + in_quotes(*text));
      ok = false;
    } else if (upper != "GET" && upper != "HEAD") {
      fail(entry.Mark(), path, "only GET and HEAD are supported, got " + in_quotes(upper));
      ok = false;
    } else if (std::find(methods.begin(), methods.end(), upper) != methods.end()) {
      fail(entry.Mark(), path, "duplicate method " + in_quotes(upper));
      ok = false;
    } else {
      methods.push_back(std::move(upper));
    }
  }
  if (ok) {
    cfg_.validation.methods = std::move(methods);
  }
}

void loader::load_limits(const YAML::Node& node, const std::string& key) {
  auto& l = cfg_.limits;
  std::optional<located> target;  // checked against header_bytes once both are known
  walk_map(
      node, key,
      {{"header_bytes",
        [this, &l](const YAML::Node& n, const std::string& k) {
          if (auto size = load_size(n, k)) {
            if (*size < 1024) {
              fail(n.Mark(), k, "must be at least 1024 bytes");
            } else {
              l.header_bytes = static_cast<std::size_t>(*size);
            }
          }
        }},
       {"header_count", [this, &l](const YAML::Node& n,
                                   const std::string& k) { load_count(n, k, l.header_count); }},
       {"target_bytes",
        [this, &l, &target](const YAML::Node& n, const std::string& k) {
          if (auto size = load_size(n, k)) {
            if (*size == 0) {
              fail(n.Mark(), k, "must be greater than 0");
            } else {
              l.target_bytes = static_cast<std::size_t>(*size);
              target = located{"", n.Mark(), k};
            }
          }
        }},
       {"max_connections",
        [this, &l](const YAML::Node& n, const std::string& k) {
          load_count(n, k, l.max_connections);
        }},
       {"max_body_bytes",
        [this, &l](const YAML::Node& n, const std::string& k) {
          if (auto size = load_size(n, k)) {
            l.max_body_bytes = *size;
          }
        }},
       {"max_requests_per_connection",
        [this, &l](const YAML::Node& n, const std::string& k) {
          load_count(n, k, l.max_requests_per_connection);
        }},
       {"max_pipelined", [this, &l](const YAML::Node& n, const std::string& k) {
          load_count(n, k, l.max_pipelined, true);
        }}});
  if (l.target_bytes > l.header_bytes) {
    const YAML::Mark mark = target ? target->mark : node.Mark();
    fail(mark, child(key, "target_bytes"),
         "must not exceed limits.header_bytes (" + std::to_string(l.header_bytes) + ")");
  }
}

void loader::load_duration(const YAML::Node& node, const std::string& key, duration& out,
                           bool zero_ok) {
  auto text = scalar(node, key);
  if (!text) {
    return;
  }
  const auto d = parse_duration(*text);
  if (!d) {
    fail(node.Mark(), key,
         "invalid duration " + in_quotes(*text) + " (expected e.g. 250ms, 5s, 2m, 1h)");
  } else if (d->count() < 0 || (d->count() == 0 && !zero_ok)) {
    fail(node.Mark(), key, zero_ok ? "must not be negative" : "must be greater than 0");
  } else {
    out = *d;
  }
}

std::optional<std::uint64_t> loader::load_size(const YAML::Node& node, const std::string& key) {
  auto text = scalar(node, key);
  if (!text) {
    return std::nullopt;
  }
  auto size = parse_size(*text);
  if (!size) {
    fail(node.Mark(), key,
         "invalid size " + in_quotes(*text) + " (expected e.g. 512, 16KiB, 8MiB, 1GiB)");
  }
  return size;
}

void loader::load_count(const YAML::Node& node, const std::string& key, std::size_t& out,
                        bool zero_ok) {
  auto text = scalar(node, key);
  if (!text) {
    return;
  }
  const auto value = parse_unsigned(*text);
  if (!value || (*value == 0 && !zero_ok) || *value > std::numeric_limits<std::uint32_t>::max()) {
    fail(node.Mark(), key,
         std::string(zero_ok ? "expected 0 (no cap) or a positive integer, got "
                             : "expected a positive integer, got ") +
             in_quotes(*text));
    return;
  }
  out = static_cast<std::size_t>(*value);
}

void loader::load_policy(const YAML::Node& node, const std::string& key, forwarded_policy& out) {
  auto text = scalar(node, key);
  if (!text) {
    return;
  }
  if (*text == "off") {
    out = forwarded_policy::off;
  } else if (*text == "append") {
    out = forwarded_policy::append;
  } else if (*text == "replace") {
    out = forwarded_policy::replace;
  } else {
    fail(node.Mark(), key, "expected off, append or replace, got " + in_quotes(*text));
  }
}

void loader::load_workers(const YAML::Node& node, const std::string& key) {
  auto text = scalar(node, key);
  if (!text) {
    return;
  }
  if (*text == "auto") {
    cfg_.workers = 0;
    return;
  }
  const auto value = parse_unsigned(*text);
  if (!value || *value < 1 || *value > 256) {
    fail(node.Mark(), key, "expected auto or a number from 1 to 256, got " + in_quotes(*text));
    return;
  }
  cfg_.workers = static_cast<unsigned>(*value);
}

void loader::load_io(const YAML::Node& node, const std::string& key) {
  auto text = scalar(node, key);
  if (!text) {
    return;
  }
  if (const auto e = io_engine_named(*text)) {
    cfg_.io = *e;
  } else {
    fail(node.Mark(), key, "expected auto, io_uring or epoll, got " + in_quotes(*text));
  }
}

// The directory is not checked here: under systemd it is the RuntimeDirectory, which exists only
// while the service runs, and `wkproxy -t` must pass before that. Writing it at start fails
// loudly instead.
void loader::load_pid_file(const YAML::Node& node, const std::string& key) {
  auto text = scalar(node, key);
  if (!text) {
    return;
  }
  if (text->empty()) {
    fail(node.Mark(), key, "expected a file path, got an empty string");
  } else if (text->back() == '/') {
    fail(node.Mark(), key, "a file path must not end in \"/\", got " + in_quotes(*text));
  } else {
    cfg_.pid_file = resolve_path(*text);
  }
}

void loader::load_access_log(const YAML::Node& node, const std::string& key) {
  access_log& a = cfg_.access_log;
  if (node.IsMap()) {
    walk_map(node, key,
             {{"output",
               [this, &a](const YAML::Node& n, const std::string& k) { load_log_output(n, k, a); }},
              {"format", [this, &a](const YAML::Node& n, const std::string& k) {
                 if (auto text = scalar(n, k)) {
                   if (*text == "json") {
                     a.format = log_format::json;
                   } else if (*text == "combined") {
                     a.format = log_format::combined;
                   } else {
                     fail(n.Mark(), k, "expected json or combined, got " + in_quotes(*text));
                   }
                 }
               }}});
    return;
  }
  if (node.IsSequence()) {
    fail(node.Mark(), key,
         "expected stdout, stderr, off, a file path or a mapping with output and format, got a "
         "list");
    return;
  }
  load_log_output(node, key, a);
}

void loader::load_log_output(const YAML::Node& node, const std::string& key, access_log& out) {
  auto text = scalar(node, key);
  if (!text) {
    return;
  }
  if (*text == "stdout") {
    out.output = log_output::stdout_stream;
  } else if (*text == "stderr") {
    out.output = log_output::stderr_stream;
  } else if (*text == "off") {
    out.output = log_output::off;
  } else if (text->find('/') == std::string::npos) {
    // A path needs a "/" so that a misspelt keyword ("stdot", "syslog") is an error, not a file
    // quietly created beside the config.
    fail(node.Mark(), key,
         "expected stdout, stderr, off or a file path (with a \"/\", e.g. ./access.log), got " +
             in_quotes(*text));
  } else if (text->back() == '/') {
    fail(node.Mark(), key, "a file path must not end in \"/\", got " + in_quotes(*text));
  } else {
    // The file itself is opened when the proxy starts (it may not exist yet); its directory
    // must, so that `wkproxy -t` catches a wrong path.
    std::string path = resolve_path(*text);
    const fs::path dir = fs::path(path).parent_path();
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      fail(node.Mark(), key, "is a directory: " + in_quotes(path));
    } else if (!dir.empty() && !fs::is_directory(dir, ec)) {
      fail(node.Mark(), key, "no such directory: " + in_quotes(dir.string()));
    } else {
      out.output = log_output::file;
      out.path = std::move(path);
    }
  }
}

// Notes whether a YAML document has any content and where it starts. Used to find a second
// document without YAML::LoadAll, which never returns on some malformed input in yaml-cpp 0.7
// (a stray "," at the top level: jbeder/yaml-cpp#1040, fixed upstream in 0.8).
class document_probe : public YAML::EventHandler {
public:
  std::optional<YAML::Mark> content;  // where the document's first node starts

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { seen(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    seen(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    seen(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    seen(mark);
  }
  void OnMapEnd() override {}

private:
  void seen(const YAML::Mark& mark) {
    if (!content) {
      content = mark;
    }
  }
};

// The start of a second YAML document with content, if the text has one. Looks at two
// documents at most, so it always ends.
std::optional<YAML::Mark> second_document(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  document_probe first;
  document_probe second;
  if (!parser.HandleNextDocument(first) || !parser.HandleNextDocument(second)) {
    return std::nullopt;
  }
  return second.content;
}

}  // namespace

load_result load_string(std::string_view text, std::string_view file, const env_lookup& env) {
  loader l(file, env);
  try {
    const std::string owned(text);
    const YAML::Node root = YAML::Load(owned);
    if (auto mark = second_document(owned)) {
      l.fail(*mark, "", "only one YAML document is allowed");
    } else {
      l.load_document(root);
    }
  } catch (const YAML::Exception& e) {
    // Syntax errors (ParserException) and anything yaml-cpp rejects while building nodes.
    l.fail(e.mark, "", "YAML syntax error: " + e.msg);
  } catch (const std::exception& e) {
    l.fail(YAML::Mark::null_mark(), "", std::string("cannot load config: ") + e.what());
  }

  load_result result;
  // Problems are found section by section; sort them into file order (stable: same position
  // keeps discovery order, e.g. missing keys in the order of the schema).
  // Errors in tokens_dir files follow the config's, file by file.
  std::stable_sort(l.errors_.begin(), l.errors_.end(), [&](const error& a, const error& b) {
    const bool a_other = a.file != l.cfg_.file;
    const bool b_other = b.file != l.cfg_.file;
    return std::tie(a_other, a.file, a.line, a.column) <
           std::tie(b_other, b.file, b.line, b.column);
  });
  result.errors = std::move(l.errors_);
  if (result.errors.empty()) {
    result.cfg = std::move(l.cfg_);
  }
  return result;
}

load_result load_tenant_string(std::string_view text, std::string_view file,
                               std::string_view prefix, const env_lookup& env) {
  loader l(file, env);
  l.cfg_.file = std::string(file);
  l.cfg_.validation.prefix = std::string(prefix);
  try {
    l.load_tenant_document(YAML::Load(std::string(text)), fs::path(file).stem().string());
  } catch (const YAML::Exception& e) {
    l.fail(e.mark, "", "YAML syntax error: " + e.msg);
  }
  load_result result;
  result.errors = std::move(l.errors_);
  if (result.errors.empty()) {
    result.cfg = std::move(l.cfg_);
  }
  return result;
}

load_result load_file(const std::string& path, const env_lookup& env) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    load_result result;
    result.errors.push_back(
        error{path, 0, 0, "", std::string("cannot read file: ") + std::strerror(errno)});
    return result;
  }
  std::string text;
  char buffer[4096];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) {
    text.append(buffer, n);
  }
  const bool failed = std::ferror(f) != 0;
  const int read_errno = errno;
  std::fclose(f);
  if (failed) {
    load_result result;
    result.errors.push_back(
        error{path, 0, 0, "", std::string("cannot read file: ") + std::strerror(read_errno)});
    return result;
  }
  return load_string(text, path, env);
}

}  // namespace wk::config
