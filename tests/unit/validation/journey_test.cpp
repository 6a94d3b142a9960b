// A tenant domain's journey, stage by stage, and the host activity it reads.

#include "validation/host_activity.hpp"
#include "validation/journey.hpp"

#include <doctest/doctest.h>

namespace v = wk::validation;
using namespace std::chrono_literals;

namespace {

const auto t0 = std::chrono::system_clock::time_point(std::chrono::seconds(1'796'526'245));

v::journey_input input(std::string cert, std::string dns = {}) {
  v::journey_input in;
  in.domain = "shop.example.com";
  in.certificate_status = std::move(cert);
  in.dns_status = std::move(dns);
  in.routing_endpoint = "d111111abcdef8.cloudfront.net";
  in.now = t0;
  in.watching_since = t0 - 10min;
  in.quiet_period = 1h;
  return in;
}

}  // namespace

TEST_CASE("journey: from waiting for the CA to safe to remove") {
  auto in = input("");
  CHECK(v::journey_of(in).stage == v::stage::unknown);

  in = input("pending-validation");
  auto j = v::journey_of(in);
  CHECK(j.stage == v::stage::waiting_for_ca);
  CHECK(j.sentence == "waiting for the CA to fetch the token (certificate pending-validation)");

  in.last_fetch = t0 - 1min;
  in.last_fetch_status = 404;
  CHECK(v::journey_of(in).stage == v::stage::token_problem);
  in.last_fetch_status = 200;
  j = v::journey_of(in);
  CHECK(j.stage == v::stage::token_served);
  CHECK(j.sentence.find("the CA fetched it at 2026-12-06T03:03:05Z (answer 200)") !=
        std::string::npos);

  in = input("issued", "invalid-configuration");
  j = v::journey_of(in);
  CHECK(j.stage == v::stage::switch_dns);
  CHECK(j.dns_record == "CNAME shop.example.com → d111111abcdef8.cloudfront.net");
  CHECK(j.sentence == "issued: switch DNS now: CNAME shop.example.com → "
                      "d111111abcdef8.cloudfront.net (CloudFront does not see the record yet)");

  in = input("issued", "valid-configuration");
  in.last_request = t0 - 2min;
  CHECK(v::journey_of(in).stage == v::stage::dns_valid);
  in.last_request = t0 - 61min;
  j = v::journey_of(in);
  CHECK(j.stage == v::stage::safe_to_remove);
  CHECK(j.sentence.starts_with("safe to remove wkproxy for this domain"));
  // No request seen: quiet only once the process has watched for the whole period.
  in.last_request.reset();
  CHECK(v::journey_of(in).stage == v::stage::dns_valid);
  in.watching_since = t0 - 2h;
  CHECK(v::journey_of(in).stage == v::stage::safe_to_remove);

  for (const char* bad : {"failed", "expired", "revoked", "validation-timed-out", "inactive"}) {
    CHECK(v::journey_of(input(bad)).stage == v::stage::failed);
  }
}

TEST_CASE("journey: an apex gets an alias, ANAME or flattening, not a CNAME") {
  CHECK(v::is_apex("example.com"));
  CHECK(v::is_apex("example.co.uk"));
  CHECK(v::is_apex("example.com.au"));
  CHECK(!v::is_apex("www.example.com"));
  CHECK(!v::is_apex("a.b.example.co.uk"));
  CHECK(v::dns_record("example.com", "d1.cloudfront.net") ==
        "example.com: alias record (Route 53), ANAME or CNAME flattening → d1.cloudfront.net");
  CHECK(v::dns_record("www.example.com", "").empty());
  auto in = input("issued");
  in.domain = "example.com";
  CHECK(v::journey_of(in).sentence.find("ANAME") != std::string::npos);
  in.routing_endpoint.clear();
  CHECK(v::journey_of(in).sentence == "issued: switch DNS now (routing endpoint not known yet)");
}

TEST_CASE("host activity: followed hosts only, kept across snapshots") {
  v::host_activity a({"b.example.com", "a.example.com", "a.example.com"}, nullptr);
  CHECK(!a.last("a.example.com"));
  a.touch("a.example.com", t0);
  a.touch("unknown.example.com", t0);
  REQUIRE(a.last("a.example.com"));
  CHECK(*a.last("a.example.com") == t0);
  CHECK(!a.last("unknown.example.com"));
  a.touch("a.example.com", t0 + 5s);
  CHECK(*a.last("a.example.com") == t0 + 5s);
  v::host_activity next({"a.example.com", "c.example.com"}, &a);
  CHECK(*next.last("a.example.com") == t0 + 5s);
  CHECK(!next.last("c.example.com"));
  CHECK(!next.last("b.example.com"));
}
