#pragma once
// GetManagedCertificateDetails, read: the tokens ACM waits for on a tenant's domains, from the
// API's XML (what wkproxy's CloudFront client receives) or the AWS CLI's JSON (what a user pastes
// into `wkproxy tokens import`). Both go through the same checks, so a token imported from a
// file and one polled from the API are the same token. Pure: text in, tokens and messages out.

#include "config/yaml_rewrite.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace wk::aws {

// One ACM HTTP validation token as it goes into the config (config::token's input fields):
// `domain` lower-case and equal to the host of redirect_from; redirect_from and redirect_to as
// given by AWS, checked with config::parse_redirect_from / parse_redirect_to.
using imported_token = config::token_entry;

// What was read from get-managed-certificate-details output.
struct certificate_details {
  std::string certificate_arn;         // CertificateArn; empty when absent
  std::string tenant;                  // whose tokens these are (see assign_tenant)
  std::string status;                  // CertificateStatus; empty when absent
  std::string token_host;              // ValidationTokenHost; empty when absent
  std::vector<imported_token> tokens;  // the importable tokens, in input order
  std::vector<std::string> warnings;   // hints and skipped entries, e.g. wildcard domains
  // Problems with the input, e.g. "ValidationTokenDetails[1].RedirectTo: must start with
  // https://". When not empty, `tokens` must not be used: the input is wrong somewhere.
  std::vector<std::string> errors;
};

// Parses get-managed-certificate-details output: JSON when the first non-space character is '{',
// XML when it is '<' (root <GetManagedCertificateDetailsResponse>,
// <GetManagedCertificateDetailsResult> or <ManagedCertificateDetails>); nesting deeper than
// max_input_depth (aws/xml.hpp) is an error, found before XML is parsed. Every RedirectFrom must
// be http://<Domain><prefix><file> (`prefix` as validation.prefix: starts and ends with '/'),
// every RedirectTo an https URL; either may come without its scheme, as in the AWS CLI
// reference's example, and is imported with it. The two file names need not be equal (AWS's
// example has them differ). Wildcard domains and entries without RedirectFrom/RedirectTo are
// skipped with a warning; a status other than pending-validation or issued, and
// ValidationTokenHost "cloudfront", are warnings. No importable token left is an error. Never
// throws for bad input.
certificate_details parse_certificate_details(std::string_view text, std::string_view prefix);

// Records whose tokens these are, in `details.tenant` and in every token: `tenant_id` (the
// distribution tenant's id, name or ARN the details were fetched for) when given, else the
// CertificateArn (one certificate per tenant); empty when neither is known. `tokens import
// --write` then replaces that tenant's tokens and no other's.
void assign_tenant(certificate_details& details, std::string_view tenant_id);

// The tokens' domains, de-duplicated, in input order.
std::vector<std::string> token_domains(const std::vector<imported_token>& tokens);

// "1 token", "3 tokens".
std::string count_of(std::size_t n, std::string_view noun);

}  // namespace wk::aws
