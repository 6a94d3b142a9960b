#pragma once
// The CloudFront API calls wkproxy makes for each distribution tenant (REST-XML, API version
// 2020-05-31), as pure functions: the request to sign and send, and the reading of the answer.
// Shapes from the CloudFront API reference:
// - GetManagedCertificateDetails: GET /2020-05-31/managed-certificate/{Identifier}
//   (read by aws/certificate_details, the same reader as `wkproxy tokens import`);
// - GetDistributionTenant: GET /2020-05-31/distribution-tenant/{Identifier};
// - GetConnectionGroup: GET /2020-05-31/connection-group/{Identifier};
// - VerifyDnsConfiguration: POST /2020-05-31/verify-dns-configuration with
//   <VerifyDnsConfigurationRequest><Identifier>..</Identifier></VerifyDnsConfigurationRequest>.
// Errors come as <ErrorResponse><Error><Code>..</Code><Message>..</Message></Error>.

#include "aws/http_client.hpp"
#include "aws/sigv4.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace wk::aws {

inline constexpr std::string_view cloudfront_service = "cloudfront";
// CloudFront is a global service, signed for us-east-1.
inline constexpr std::string_view cloudfront_region = "us-east-1";
inline constexpr std::string_view default_cloudfront_endpoint = "https://cloudfront.amazonaws.com";

// What an AWS API answered instead of a result, or why there was no answer.
struct api_error {
  unsigned http_status = 0;  // 0: no answer (network, TLS, timeout)
  std::string code;          // AWS's error code ("Throttling", "AccessDenied"), or "" for none
  std::string message;       // AWS's message, or the network failure
  // Throttling, 5xx and network failures are worth retrying after a backoff; 4xx otherwise not
  // (until the next poll).
  [[nodiscard]] bool retryable() const;
  // "AccessDenied (HTTP 403): User ... is not authorized" / "connect to ...: refused".
  [[nodiscard]] std::string text() const;
};

// The error in an AWS answer with a non-2xx status: the XML error document's code and message
// when there is one, else the status alone.
api_error error_of(const http_response& r);

// The unsigned requests (host header from `cf`, path under its base path).
request get_managed_certificate_details(const endpoint& cf, std::string_view identifier);
request get_distribution_tenant(const endpoint& cf, std::string_view identifier);
request get_connection_group(const endpoint& cf, std::string_view identifier);
request verify_dns_configuration(const endpoint& cf, std::string_view identifier);

struct tenant_domain {
  std::string domain;  // lower-case
  std::string status;  // "active" / "inactive"
};

struct distribution_tenant {
  std::string id;
  std::string name;
  std::string arn;
  std::string distribution_id;
  std::string connection_group_id;  // empty: the account's default connection group
  std::string status;               // "InProgress", "Deployed"
  bool enabled = true;
  std::vector<tenant_domain> domains;
};

struct connection_group {
  std::string id;
  std::string name;
  std::string routing_endpoint;  // the CNAME target, e.g. d111111abcdef8.cloudfront.net
  std::string status;
  bool is_default = false;
};

struct dns_configuration {
  std::string domain;  // lower-case
  std::string status;  // valid-configuration, invalid-configuration, unknown-configuration
  std::string reason;
};

// Readers of a 2xx answer's body; the reason when it is not the expected document.
std::variant<distribution_tenant, std::string> parse_distribution_tenant(std::string_view xml);
std::variant<connection_group, std::string> parse_connection_group(std::string_view xml);
std::variant<std::vector<dns_configuration>, std::string>
parse_dns_configuration(std::string_view xml);

}  // namespace wk::aws
