#pragma once
// A tenant domain's way from "waiting for the CA" to "safe to remove wkproxy", in plain
// language, from what the CloudFront API said (certificate and DNS status), what this proxy saw
// (the CA's fetches of the token, the last request for the host) and the clock. Pure.
//
// The stages, in order:
//   waiting_for_ca  the certificate is pending-validation and no CA has fetched a token yet;
//   token_served    the CA fetched the token and got a 2xx answer (or redirect mode's 3xx to
//                   ACM); ACM is issuing;
//   switch_dns      the certificate is issued: create the DNS record now (dns_record says which);
//   dns_valid       CloudFront sees the record; clients still arrive here as old DNS answers
//                   expire;
//   safe_to_remove  DNS valid and no request for the host for the quiet period.
// And off the path: unknown (no answer from the API yet), failed (the certificate failed, expired,
// was revoked or timed out: request it again) and token_problem (the CA's last fetch did not get
// a 2xx).

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace wk::validation {

enum class stage {
  unknown,
  waiting_for_ca,
  token_problem,
  token_served,
  switch_dns,
  dns_valid,
  safe_to_remove,
  failed
};

// "waiting_for_ca", ..., as in /status.json and the metrics' label.
std::string_view name_of(stage s);

struct journey_input {
  std::string domain;              // lower-case
  std::string certificate_status;  // CertificateStatus; "" when not known yet
  std::string dns_status;          // VerifyDnsConfiguration's Status; "" when not asked
  std::string routing_endpoint;    // the connection group's; "" when not known
  std::optional<std::chrono::system_clock::time_point> last_fetch;    // the CA's, of a token
  unsigned last_fetch_status = 0;                                     // what it got
  std::optional<std::chrono::system_clock::time_point> last_request;  // any request for the host
  std::chrono::system_clock::time_point now;
  std::chrono::system_clock::time_point watching_since;  // when this process started counting
  std::chrono::milliseconds quiet_period{3'600'000};
};

struct journey {
  validation::stage stage = stage::unknown;
  std::string sentence;    // "issued: switch DNS now: CNAME shop.example.com → d1.cloudfront.net"
  std::string dns_record;  // the record to create ("" until the routing endpoint is known)
};

journey journey_of(const journey_input& in);

// Whether `domain` is a zone apex, which cannot hold a CNAME: two labels ("example.com"), or
// three under a common two-level public suffix ("example.co.uk", "example.com.au"). A heuristic
// (no public suffix list); the record text says what to do either way.
bool is_apex(std::string_view domain);

// "CNAME shop.example.com → d111111abcdef8.cloudfront.net", or for an apex "example.com: alias
// (Route 53), ANAME or CNAME flattening → d111111abcdef8.cloudfront.net".
std::string dns_record(std::string_view domain, std::string_view routing_endpoint);

}  // namespace wk::validation
