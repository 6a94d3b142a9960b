#include "runtime/runtime.hpp"

#include "core/ascii.hpp"
#include "core/host_pattern.hpp"
#include "net/tls_context.hpp"
#include "net/tls_server.hpp"

#include <algorithm>

namespace wk::runtime {

namespace {

bool make_target(const config::upstream& u, upstream::resolver_registry& dns, upstream::target& t,
                 std::vector<std::string>& errors) {
  t.cfg = u;
  t.key = u.key();
  t.dns = dns.cell_for(u.host, u.port);
  if (u.tls) {
    auto ctx = net::make_client_context(u);
    if (auto* e = std::get_if<std::string>(&ctx)) {
      errors.push_back(*e);
      return false;
    }
    t.tls = std::get<0>(std::move(ctx));
  }
  return true;
}

bool uses_fetch(const config::validation_route& v) {
  if (v.mode == config::validation_mode::fetch) {
    return true;
  }
  return std::any_of(v.modes.begin(), v.modes.end(), [](const config::domain_mode& m) {
    return m.mode == config::validation_mode::fetch;
  });
}

std::string authority(const std::string& host, std::uint16_t port) {
  return port == 443 ? host : host + ":" + std::to_string(port);
}

}  // namespace

const upstream::target& listener_runtime::passthrough_for(std::string_view sni) const {
  if (!sni.empty()) {
    for (const auto& r : sni_routes) {
      if (r.pattern == sni) {
        return r.target;
      }
    }
    for (const auto& r : sni_routes) {
      if (core::wildcard_matches(r.pattern, sni)) {
        return r.target;
      }
    }
  }
  return passthrough;
}

const listener_runtime* snapshot::listener_for(const net::listener_slot& slot) const {
  for (const auto& l : listeners) {
    if (l.cfg->address == slot.address && l.ordinal == slot.ordinal) {
      return &l;
    }
  }
  return nullptr;
}

std::vector<std::string> snapshot::upstream_keys() const {
  std::vector<std::string> keys{origin.key, cloudfront.key};
  for (const auto& t : fetch_targets) {
    keys.push_back(t.key);
  }
  return keys;
}

const upstream::target* snapshot::fetch_target(const config::token& t) const {
  for (const auto& f : fetch_targets) {
    if (f.cfg.host == t.to_host && f.cfg.port == t.to_port) {
      return &f;
    }
  }
  return nullptr;
}

std::variant<std::shared_ptr<const snapshot>, std::vector<std::string>>
build_runtime(config::config cfg, upstream::resolver_registry& dns,
              std::vector<std::string>& warnings, const snapshot* previous) {
  auto rt = std::make_shared<snapshot>();
  std::vector<std::string> errors;
  make_target(cfg.origin, dns, rt->origin, errors);
  make_target(cfg.cloudfront, dns, rt->cloudfront, errors);
  if (uses_fetch(cfg.validation)) {
    for (const auto& t : cfg.tokens) {
      const bool known = std::any_of(rt->fetch_targets.begin(), rt->fetch_targets.end(),
                                     [&](const upstream::target& f) {
                                       return f.cfg.host == t.to_host && f.cfg.port == t.to_port;
                                     });
      if (known) {
        continue;
      }
      config::upstream u;
      u.name = "acm";
      u.url = "https://" + authority(t.to_host, t.to_port);
      u.tls = true;
      u.host = t.to_host;
      u.port = t.to_port;
      u.sni = t.to_host;
      u.verify = true;  // the token's content is only as good as the host that served it
      u.ca_file = cfg.validation.fetch_ca_file;
      upstream::target target;
      if (make_target(u, dns, target, errors)) {
        rt->fetch_targets.push_back(std::move(target));
      }
    }
  }
  // Listener settings point into the config, so they are built against its final place.
  auto shared_cfg = std::make_shared<config::config>(std::move(cfg));
  const auto& listen = shared_cfg->listen;
  for (std::size_t i = 0; i < listen.size(); ++i) {
    listener_runtime l;
    l.cfg = &listen[i];
    l.ordinal = static_cast<std::size_t>(
        std::count_if(listen.begin(), listen.begin() + static_cast<std::ptrdiff_t>(i),
                      [&](const config::listener& o) { return o.address == listen[i].address; }));
    if (l.cfg->mode == config::listener_mode::tls) {
      auto tls = net::make_server_tls(l.cfg->certificates, warnings);
      if (auto* e = std::get_if<std::string>(&tls)) {
        errors.push_back("listen " + l.cfg->address + ": " + *e);
      } else {
        l.tls = std::get<0>(std::move(tls));
      }
    } else if (l.cfg->mode == config::listener_mode::passthrough) {
      make_target(l.cfg->passthrough, dns, l.passthrough, errors);
      for (const auto& r : l.cfg->sni_routes) {
        sni_target t;
        t.pattern = r.pattern;
        if (make_target(r.target, dns, t.target, errors)) {
          l.sni_routes.push_back(std::move(t));
        }
      }
    }
    rt->listeners.push_back(std::move(l));
  }
  if (!errors.empty()) {
    return errors;
  }
  const config::config& c = *shared_cfg;
  rt->routes.prefix = c.validation.prefix;
  rt->routes.domains = routing::host_allow_list(c.validation.domains);
  rt->routes.methods.clear();
  for (auto m : c.validation.methods) {
    for (char& ch : m) {
      ch = core::to_upper(ch);
    }
    rt->routes.methods.push_back(std::move(m));
  }
  auto files = validation::static_files::load(c.validation.static_dir, warnings);
  rt->cfg = std::move(shared_cfg);
  rt->tokens = validation::token_table(*rt->cfg, std::move(files));
  if (rt->cfg->aws.enabled) {
    std::vector<std::string> hosts;
    for (const std::string& d : rt->cfg->validation.domains) {
      if (!d.starts_with("*")) {
        hosts.push_back(d);
      }
    }
    for (const config::token& t : rt->cfg->tokens) {
      hosts.push_back(t.domain);
    }
    rt->activity = std::make_shared<const validation::host_activity>(
        std::move(hosts), previous != nullptr ? previous->activity.get() : nullptr);
  }
  return std::shared_ptr<const snapshot>(std::move(rt));
}

}  // namespace wk::runtime
