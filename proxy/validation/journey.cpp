#include "validation/journey.hpp"

#include "core/time_text.hpp"

#include <algorithm>
#include <array>

namespace wk::validation {

std::string_view name_of(stage s) {
  switch (s) {
  case stage::unknown:
    return "unknown";
  case stage::waiting_for_ca:
    return "waiting_for_ca";
  case stage::token_problem:
    return "token_problem";
  case stage::token_served:
    return "token_served";
  case stage::switch_dns:
    return "switch_dns";
  case stage::dns_valid:
    return "dns_valid";
  case stage::safe_to_remove:
    return "safe_to_remove";
  case stage::failed:
    return "failed";
  }
  return "unknown";
}

bool is_apex(std::string_view domain) {
  const auto labels = 1 + std::count(domain.begin(), domain.end(), '.');
  if (labels <= 2) {
    return true;
  }
  if (labels != 3) {
    return false;
  }
  // "example.co.uk": the middle label is a common second-level suffix under a country code.
  const auto first_dot = domain.find('.');
  const auto last_dot = domain.rfind('.');
  const std::string_view second = domain.substr(first_dot + 1, last_dot - first_dot - 1);
  const std::string_view tld = domain.substr(last_dot + 1);
  static constexpr std::array<std::string_view, 11> common = {
      "co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go", "gr"};
  return tld.size() == 2 && std::find(common.begin(), common.end(), second) != common.end();
}

std::string dns_record(std::string_view domain, std::string_view routing_endpoint) {
  if (routing_endpoint.empty()) {
    return {};
  }
  if (is_apex(domain)) {
    return std::string(domain) + ": alias record (Route 53), ANAME or CNAME flattening → " +
           std::string(routing_endpoint);
  }
  return "CNAME " + std::string(domain) + " → " + std::string(routing_endpoint);
}

namespace {

std::string at(std::chrono::system_clock::time_point t) {
  return core::iso8601_seconds(t);
}

}  // namespace

journey journey_of(const journey_input& in) {
  journey out;
  out.dns_record = dns_record(in.domain, in.routing_endpoint);
  const std::string& cert = in.certificate_status;
  // A 2xx, or redirect mode's 301/302/307/308 to ACM, which the CA follows.
  const unsigned st = in.last_fetch_status;
  const bool fetched_ok = in.last_fetch && ((st >= 200 && st < 300) || st == 301 || st == 302 ||
                                            st == 307 || st == 308);
  if (cert.empty()) {
    out.stage = stage::unknown;
    out.sentence = "no answer from the CloudFront API yet";
    return out;
  }
  if (cert == "failed" || cert == "expired" || cert == "revoked" ||
      cert == "validation-timed-out" || cert == "inactive") {
    out.stage = stage::failed;
    out.sentence = "certificate " + cert +
                   ": request it again in CloudFront, then its new token "
                   "is served here";
    return out;
  }
  if (cert != "issued") {
    if (fetched_ok) {
      out.stage = stage::token_served;
      out.sentence = "token served: the CA fetched it at " + at(*in.last_fetch) + " (answer " +
                     std::to_string(in.last_fetch_status) + "); ACM is issuing";
    } else if (in.last_fetch) {
      out.stage = stage::token_problem;
      out.sentence = "the CA's last fetch, at " + at(*in.last_fetch) + ", got " +
                     (in.last_fetch_status == 0 ? std::string("no answer")
                                                : std::to_string(in.last_fetch_status)) +
                     ": check the route and the token";
    } else {
      out.stage = stage::waiting_for_ca;
      out.sentence = "waiting for the CA to fetch the token (certificate " + cert + ")";
    }
    return out;
  }
  if (in.dns_status != "valid-configuration") {
    out.stage = stage::switch_dns;
    out.sentence = "issued: switch DNS now" +
                   (out.dns_record.empty() ? std::string(" (routing endpoint not known yet)")
                                           : ": " + out.dns_record);
    if (in.dns_status == "invalid-configuration") {
      out.sentence += " (CloudFront does not see the record yet)";
    } else if (in.dns_status == "unknown-configuration") {
      out.sentence += " (CloudFront could not check the record)";
    }
    return out;
  }
  // Quiet: no request for the period, counted from the last one, or from when this process began
  // to count when there was none.
  const bool quiet = in.now - in.last_request.value_or(in.watching_since) >= in.quiet_period;
  if (quiet) {
    out.stage = stage::safe_to_remove;
    out.sentence = "safe to remove wkproxy for this domain: DNS points at CloudFront and " +
                   (in.last_request ? "no request came here since " + at(*in.last_request)
                                    : "no request came here since " + at(in.watching_since));
    return out;
  }
  out.stage = stage::dns_valid;
  out.sentence = "DNS valid: clients move to CloudFront as old DNS answers expire (last request "
                 "here at " +
                 at(*in.last_request) + ")";
  return out;
}

}  // namespace wk::validation
