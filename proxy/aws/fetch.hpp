#pragma once
// One CloudFront API call from the command line (`wkproxy tokens import --tenant ID` without a
// file): credentials from the chain, the request signed and sent, the answer's body. Blocking:
// runs its own io_context.

#include "aws/cloudfront.hpp"
#include "config/load.hpp"

#include <chrono>
#include <string>
#include <string_view>

namespace wk::aws {

struct fetched {
  bool ok = false;
  std::string text;    // the 2xx body, or why there is none
  std::string source;  // the credential step used
};

// GetManagedCertificateDetails for `tenant` (id, name or ARN), with the environment's
// credentials and endpoints (AWS_PROFILE, AWS_ENDPOINT_URL_CLOUDFRONT, AWS_CA_BUNDLE, ...).
fetched fetch_certificate_details(const config::env_lookup& env, std::string_view tenant,
                                  std::chrono::milliseconds timeout);

}  // namespace wk::aws
