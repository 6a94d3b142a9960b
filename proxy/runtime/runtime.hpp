#pragma once
// The runtime snapshot: a validated config plus everything derived from it that the data path
// needs (route table, upstream targets with DNS cells and TLS contexts). Immutable once built;
// shared by all workers as std::shared_ptr<const runtime::snapshot>. A reload builds a new one;
// requests in flight keep the one they started with.

#include "config/config.hpp"
#include "net/listener.hpp"
#include "routing/route.hpp"
#include "upstream/resolver.hpp"
#include "upstream/target.hpp"
#include "validation/host_activity.hpp"
#include "validation/plan.hpp"

#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace wk::net {
class server_tls;
}

namespace wk::runtime {

// A passthrough route with its upstream ready to connect.
struct sni_target {
  std::string pattern;  // "name" or "*.suffix"
  upstream::target target;
};

// What a listener does, as of this snapshot (a reload may change it for a kept listener).
struct listener_runtime {
  const config::listener* cfg = nullptr;       // into snapshot::cfg
  std::size_t ordinal = 0;                     // see net::listener_slot
  std::shared_ptr<const net::server_tls> tls;  // mode tls: certificates by SNI
  upstream::target passthrough;                // mode passthrough: the default upstream
  std::vector<sni_target> sni_routes;

  // The passthrough upstream for a ClientHello's SNI (lower-case, may be empty): an exact
  // route, else a "*.suffix" route matching exactly one more label, else the default.
  const upstream::target& passthrough_for(std::string_view sni) const;
};

struct snapshot {
  std::shared_ptr<const config::config> cfg;
  routing::route_table routes;
  upstream::target origin;
  upstream::target cloudfront;
  validation::token_table tokens;  // points into *cfg
  // fetch mode: one HTTPS target per RedirectTo host:port (ACM's validation hosts)
  std::vector<upstream::target> fetch_targets;
  std::vector<listener_runtime> listeners;  // in config order
  // With aws: (the CloudFront API client), when each allow-listed name last had a request, for
  // the tenants' "safe to remove" state; nullptr without aws:.
  std::shared_ptr<const validation::host_activity> activity;

  // The settings of the listener `slot` belongs to; nullptr when this snapshot has none (a
  // reload removed it and its last connections are still arriving).
  const listener_runtime* listener_for(const net::listener_slot& slot) const;

  std::vector<std::string> upstream_keys() const;
  // The fetch target for a token's RedirectTo; nullptr when fetch mode is not configured.
  const upstream::target* fetch_target(const config::token& t) const;
};

// Builds a snapshot on the main thread (reads CA files and validation.static_dir). On failure,
// the reasons. `warnings` gets what was skipped (e.g. static files outside the directory).
// `previous` (the running snapshot, if any) passes on what outlives a snapshot (host activity).
std::variant<std::shared_ptr<const snapshot>, std::vector<std::string>>
build_runtime(config::config cfg, upstream::resolver_registry& dns,
              std::vector<std::string>& warnings, const snapshot* previous = nullptr);

}  // namespace wk::runtime
