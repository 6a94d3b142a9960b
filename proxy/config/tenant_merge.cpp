#include "config/tenant_merge.hpp"

#include "config/upstream_url.hpp"
#include "core/host_pattern.hpp"

#include <algorithm>

namespace wk::config {

namespace {

bool allowed(const std::vector<std::string>& patterns, std::string_view host) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return core::host_pattern_matches(p, host); });
}

}  // namespace

std::vector<std::string> merge_api_tenants(config& cfg, const std::vector<api_tenant>& tenants) {
  std::vector<std::string> warnings;
  auto& domains = cfg.validation.domains;
  for (const api_tenant& t : tenants) {
    // The API's answer replaces whatever the files said about this tenant.
    if (!t.tokens.empty()) {
      std::erase_if(cfg.tokens, [&](const token& k) { return k.tenant == t.tenant; });
    }
    std::vector<std::string> wanted = t.domains;
    for (const token_entry& e : t.tokens) {
      wanted.push_back(e.domain);
    }
    for (const std::string& d : wanted) {
      if (!is_host_name(d)) {
        warnings.push_back("tenant " + t.tenant + ": skipped domain " + d +
                           " (not a host name; wildcards are validated by DNS)");
        continue;
      }
      if (!allowed(domains, d)) {
        domains.push_back(d);
      }
    }
    for (const token_entry& e : t.tokens) {
      const auto from = parse_redirect_from(e.redirect_from, cfg.validation.prefix);
      const auto to = parse_redirect_to(e.redirect_to);
      if (!std::holds_alternative<redirect_from_parts>(from) ||
          !std::holds_alternative<redirect_to_parts>(to)) {
        warnings.push_back("tenant " + t.tenant + ": skipped token " + e.redirect_from);
        continue;
      }
      const auto& f = std::get<redirect_from_parts>(from);
      const auto& r = std::get<redirect_to_parts>(to);
      const auto clash = std::find_if(cfg.tokens.begin(), cfg.tokens.end(), [&](const token& k) {
        return k.domain == f.domain && k.file == f.file;
      });
      if (clash != cfg.tokens.end()) {
        if (clash->tenant != t.tenant) {
          warnings.push_back("tenant " + t.tenant + ": skipped token " + e.redirect_from +
                             ": tenant " + (clash->tenant.empty() ? "(none)" : clash->tenant) +
                             " has the same file on the same domain");
        }
        continue;
      }
      token k;
      k.domain = f.domain;
      k.tenant = t.tenant;
      k.file = f.file;
      k.redirect_from = with_default_scheme(e.redirect_from, "http");
      k.redirect_to = with_default_scheme(e.redirect_to, "https");
      k.to_host = r.host;
      k.to_port = r.port;
      k.to_target = r.target;
      cfg.tokens.push_back(std::move(k));
    }
  }
  return warnings;
}

}  // namespace wk::config
