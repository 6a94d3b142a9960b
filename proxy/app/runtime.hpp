#pragma once
// The runtime snapshot: a validated config plus everything derived from it that the data path
// needs (route table, upstream targets with DNS cells and TLS contexts). Immutable once built;
// shared by all workers as std::shared_ptr<const runtime>. A reload builds a new one; requests
// in flight keep the one they started with.

#include "config/config.hpp"
#include "routing/route.hpp"
#include "upstream/resolver.hpp"
#include "upstream/target.hpp"

#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace wk::app {

struct runtime {
  std::shared_ptr<const config::config> cfg;
  routing::route_table routes;
  upstream::target origin;
  upstream::target cloudfront;

  std::vector<std::string> upstream_keys() const { return {origin.key, cloudfront.key}; }
};

// Builds a snapshot on the main thread (reads CA files). On failure, the reasons.
std::variant<std::shared_ptr<const runtime>, std::vector<std::string>>
build_runtime(config::config cfg, upstream::resolver_registry& dns);

}  // namespace wk::app
