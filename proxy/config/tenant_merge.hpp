#pragma once
// What the CloudFront API client learned about a tenant, put into a config: the tenant's tokens
// replace the ones of the same tenant (from the config file or tokens_dir), and its domains join
// the allow-list. The running proxy rebuilds its snapshot from the result, so a token polled
// from the API is served exactly like an imported one. Pure.

#include "config/config.hpp"
#include "config/yaml_rewrite.hpp"

#include <string>
#include <vector>

namespace wk::config {

struct api_tenant {
  std::string tenant;                // as listed in aws.tenants
  std::vector<std::string> domains;  // the distribution tenant's domains (lower-case)
  std::vector<token_entry> tokens;   // from GetManagedCertificateDetails, already checked
};

// Merges `tenants` into `cfg` (loaded and checked). A token whose (domain, file) another
// tenant's token already has is skipped with a warning, as are domains that are not host names.
// Returns the warnings.
std::vector<std::string> merge_api_tenants(config& cfg, const std::vector<api_tenant>& tenants);

}  // namespace wk::config
