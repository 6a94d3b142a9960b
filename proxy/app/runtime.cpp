#include "app/runtime.hpp"

#include "net/tls_context.hpp"

#include <algorithm>
#include <cctype>

namespace wk::app {

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

}  // namespace

std::variant<std::shared_ptr<const runtime>, std::vector<std::string>>
build_runtime(config::config cfg, upstream::resolver_registry& dns) {
  auto rt = std::make_shared<runtime>();
  std::vector<std::string> errors;
  make_target(cfg.origin, dns, rt->origin, errors);
  make_target(cfg.cloudfront, dns, rt->cloudfront, errors);
  if (!errors.empty()) {
    return errors;
  }
  rt->routes.prefix = cfg.validation.prefix;
  rt->routes.domains = routing::host_allow_list(cfg.validation.domains);
  rt->routes.methods.clear();
  for (auto m : cfg.validation.methods) {
    std::transform(m.begin(), m.end(), m.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    rt->routes.methods.push_back(std::move(m));
  }
  rt->cfg = std::make_shared<const config::config>(std::move(cfg));
  return std::shared_ptr<const runtime>(std::move(rt));
}

}  // namespace wk::app
