// The CloudFront API's requests and answers as documented in its API reference (2020-05-31),
// and the STS / metadata credential documents, read by the pure functions of aws/cloudfront and
// aws/credential_chain.

#include "aws/cloudfront.hpp"
#include "aws/credential_chain.hpp"

#include <doctest/doctest.h>

namespace a = wk::aws;
using namespace std::chrono_literals;

namespace {

a::endpoint ep(std::string_view url) {
  auto r = a::parse_endpoint(url);
  REQUIRE_MESSAGE(std::holds_alternative<a::endpoint>(r), std::get<std::string>(r));
  return std::get<a::endpoint>(r);
}

std::string header(const a::request& r, std::string_view name) {
  for (const auto& [n, v] : r.headers) {
    if (n == name) {
      return v;
    }
  }
  return {};
}

}  // namespace

TEST_CASE("endpoints: scheme, host, port, path; the Host header names a non-default port") {
  const auto cf = ep("https://cloudfront.amazonaws.com");
  CHECK(cf.tls);
  CHECK(cf.host == "cloudfront.amazonaws.com");
  CHECK(cf.port == 443);
  CHECK(cf.path.empty());
  CHECK(cf.host_header() == "cloudfront.amazonaws.com");
  const auto local = ep("https://127.0.0.1:8443/prefix/");
  CHECK(local.port == 8443);
  CHECK(local.path == "/prefix");
  CHECK(local.host_header() == "127.0.0.1:8443");
  const auto v6 = ep("http://[fd00:ec2::254]");
  CHECK(v6.host == "fd00:ec2::254");
  CHECK(!v6.tls);
  CHECK(v6.host_header() == "[fd00:ec2::254]");
  CHECK(std::holds_alternative<std::string>(a::parse_endpoint("ftp://x")));
  CHECK(std::holds_alternative<std::string>(a::parse_endpoint("https://user@x")));
  CHECK(std::holds_alternative<std::string>(a::parse_endpoint("not a url")));
}

TEST_CASE("requests: paths under the API version, identifiers percent-encoded once") {
  const auto cf = ep("https://cloudfront.amazonaws.com");
  auto r = a::get_managed_certificate_details(cf, "dt_2wjDZi3hD1ivOXf6rpZJOSNE1AB");
  CHECK(r.method == "GET");
  CHECK(r.path == "/2020-05-31/managed-certificate/dt_2wjDZi3hD1ivOXf6rpZJOSNE1AB");
  CHECK(header(r, "Host") == "cloudfront.amazonaws.com");
  r = a::get_distribution_tenant(
      cf, "arn:aws:cloudfront::123456789012:distribution-tenant/dt_2wjDZi3hD1ivOXf6rpZJOSNE1AB");
  CHECK(r.path == "/2020-05-31/distribution-tenant/arn%3Aaws%3Acloudfront%3A%3A123456789012%3A"
                  "distribution-tenant%2Fdt_2wjDZi3hD1ivOXf6rpZJOSNE1AB");
  CHECK(a::get_connection_group(cf, "cg_1").path == "/2020-05-31/connection-group/cg_1");
  const auto local = ep("https://127.0.0.1:8443/base");
  CHECK(a::get_connection_group(local, "cg 1").path == "/base/2020-05-31/connection-group/cg%201");
  r = a::verify_dns_configuration(cf, "shop<&>");
  CHECK(r.method == "POST");
  CHECK(r.path == "/2020-05-31/verify-dns-configuration");
  CHECK(header(r, "Content-Type") == "application/xml");
  CHECK(r.payload.find("<VerifyDnsConfigurationRequest "
                       "xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">"
                       "<Identifier>shop&lt;&amp;&gt;</Identifier>") != std::string::npos);
}

TEST_CASE("GetDistributionTenant: domains, connection group, status") {
  const auto r = a::parse_distribution_tenant(R"(<?xml version="1.0" encoding="UTF-8"?>
<DistributionTenant xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">
  <Arn>arn:aws:cloudfront::123456789012:distribution-tenant/dt_1</Arn>
  <ConnectionGroupId>cg_2wjDWTBKTlRB87cAaUQFaakABC</ConnectionGroupId>
  <CreatedTime>2025-05-06T15:42:00.790Z</CreatedTime>
  <Customizations><Certificate><Arn>arn:aws:acm:us-east-1:123456789012:certificate/x</Arn></Certificate></Customizations>
  <DistributionId>EDFDVBD632BHDS5</DistributionId>
  <Domains>
    <DomainResult><Domain>Shop.Example.com</Domain><Status>active</Status></DomainResult>
    <DomainResult><Domain>www.shop.example.com</Domain><Status>inactive</Status></DomainResult>
  </Domains>
  <Enabled>true</Enabled><Id>dt_1</Id><Name>shop-one</Name><Status>Deployed</Status>
  <Tags><Items><Tag><Key>k</Key><Value>v</Value></Tag></Items></Tags>
</DistributionTenant>)");
  REQUIRE_MESSAGE(std::holds_alternative<a::distribution_tenant>(r), std::get<std::string>(r));
  const auto& t = std::get<a::distribution_tenant>(r);
  CHECK(t.id == "dt_1");
  CHECK(t.name == "shop-one");
  CHECK(t.connection_group_id == "cg_2wjDWTBKTlRB87cAaUQFaakABC");
  CHECK(t.distribution_id == "EDFDVBD632BHDS5");
  CHECK(t.status == "Deployed");
  CHECK(t.enabled);
  REQUIRE(t.domains.size() == 2);
  CHECK(t.domains[0].domain == "shop.example.com");
  CHECK(t.domains[1].status == "inactive");
  CHECK(std::holds_alternative<std::string>(a::parse_distribution_tenant("<ConnectionGroup/>")));
  CHECK(std::holds_alternative<std::string>(a::parse_distribution_tenant("{}")));
  CHECK(std::holds_alternative<std::string>(
      a::parse_distribution_tenant(std::string(5000, '<') + "x")));
}

TEST_CASE("GetConnectionGroup: the routing endpoint is required") {
  const auto r = a::parse_connection_group(
      "<ConnectionGroup xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\"><Id>cg_1</Id>"
      "<Name>g</Name><RoutingEndpoint>D111111ABCDEF8.cloudfront.net</RoutingEndpoint>"
      "<Status>Deployed</Status><IsDefault>true</IsDefault></ConnectionGroup>");
  REQUIRE(std::holds_alternative<a::connection_group>(r));
  CHECK(std::get<a::connection_group>(r).routing_endpoint == "d111111abcdef8.cloudfront.net");
  CHECK(std::get<a::connection_group>(r).is_default);
  CHECK(std::holds_alternative<std::string>(
      a::parse_connection_group("<ConnectionGroup><Id>cg_1</Id></ConnectionGroup>")));
}

TEST_CASE("VerifyDnsConfiguration: one status per domain") {
  const auto r = a::parse_dns_configuration(
      "<VerifyDnsConfigurationResult><DnsConfigurationList>"
      "<DnsConfiguration><Domain>a.example.com</Domain><Status>valid-configuration</Status>"
      "</DnsConfiguration><DnsConfiguration><Domain>b.example.com</Domain>"
      "<Reason>no CNAME</Reason><Status>invalid-configuration</Status></DnsConfiguration>"
      "</DnsConfigurationList></VerifyDnsConfigurationResult>");
  REQUIRE(std::holds_alternative<std::vector<a::dns_configuration>>(r));
  const auto& v = std::get<std::vector<a::dns_configuration>>(r);
  REQUIRE(v.size() == 2);
  CHECK(v[0].status == "valid-configuration");
  CHECK(v[1].reason == "no CNAME");
  CHECK(std::holds_alternative<std::string>(a::parse_dns_configuration(
      "<VerifyDnsConfigurationResult><DnsConfigurationList><DnsConfiguration><Domain>x"
      "</Domain></DnsConfiguration></DnsConfigurationList></VerifyDnsConfigurationResult>")));
}

TEST_CASE("errors: AWS's code and message; which ones are worth a retry") {
  a::http_response r;
  r.status = 400;
  r.body = "<ErrorResponse xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\"><Error>"
           "<Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>"
           "<RequestId>1</RequestId></ErrorResponse>";
  auto e = a::error_of(r);
  CHECK(e.code == "Throttling");
  CHECK(e.message == "Rate exceeded");
  CHECK(e.retryable());
  CHECK(e.text() == "Throttling (HTTP 400): Rate exceeded");
  r.status = 403;
  r.body = "<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error>"
           "</ErrorResponse>";
  e = a::error_of(r);
  CHECK(e.code == "AccessDenied");
  CHECK(!e.retryable());
  r.status = 503;
  r.body.clear();
  e = a::error_of(r);
  CHECK(e.code.empty());
  CHECK(e.retryable());
  CHECK(e.text() == "HTTP 503");
  CHECK(a::api_error{0, "network", "connect: refused"}.retryable());
}

TEST_CASE("STS credentials: AssumeRole and AssumeRoleWithWebIdentity answers") {
  const auto r = a::parse_sts_credentials(
      "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>"
      "<Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>s3cret</SecretAccessKey>"
      "<SessionToken>tok</SessionToken><Expiration>2026-12-06T03:04:05Z</Expiration>"
      "</Credentials></AssumeRoleResult></AssumeRoleResponse>");
  REQUIRE_MESSAGE(std::holds_alternative<a::temporary_credentials>(r), std::get<std::string>(r));
  const auto& c = std::get<a::temporary_credentials>(r);
  CHECK(c.creds.access_key_id == "ASIAEXAMPLE");
  CHECK(c.creds.session_token == "tok");
  REQUIRE(c.expires);
  CHECK(std::chrono::system_clock::to_time_t(*c.expires) == 1796526245);
  const auto w = a::parse_sts_credentials(
      "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
      "<AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey><SessionToken>T"
      "</SessionToken><Expiration>2026-12-06T03:04:05.123Z</Expiration></Credentials>"
      "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>");
  CHECK(std::holds_alternative<a::temporary_credentials>(w));
  CHECK(std::holds_alternative<std::string>(a::parse_sts_credentials(
      "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>")));
}

TEST_CASE("metadata and container credentials: JSON documents") {
  const auto r = a::parse_json_credentials(
      R"({"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"ASIA1","SecretAccessKey":"s",)"
      R"("Token":"t","Expiration":"2026-12-06T03:04:05Z"})");
  REQUIRE(std::holds_alternative<a::temporary_credentials>(r));
  CHECK(std::get<a::temporary_credentials>(r).creds.session_token == "t");
  CHECK(std::holds_alternative<std::string>(
      a::parse_json_credentials(R"({"Code":"Failed","Message":"no role"})")));
  CHECK(std::holds_alternative<std::string>(a::parse_json_credentials("[]")));
  CHECK(std::holds_alternative<std::string>(
      a::parse_json_credentials(R"({"AccessKeyId":"A","SecretAccessKey":"s","Expiration":"x"})")));
}

TEST_CASE("ISO 8601 times as AWS writes them") {
  CHECK(a::parse_iso8601("2026-12-06T03:04:05Z"));
  CHECK(a::parse_iso8601("2026-12-06T03:04:05+00:00"));
  CHECK(a::parse_iso8601("2026-12-06T03:04:05.790000+00:00"));
  CHECK(!a::parse_iso8601("2026-12-06 03:04:05"));
  CHECK(!a::parse_iso8601("2026-13-06T03:04:05Z"));
  CHECK(!a::parse_iso8601("2026-12-06T03:04:05+09:00"));
}

TEST_CASE("refresh: five minutes before expiry, or half-way for short-lived credentials") {
  const auto t0 = std::chrono::system_clock::time_point(std::chrono::seconds(1'000'000));
  CHECK(a::refresh_at(t0, t0 + 1h) == t0 + 55min);
  CHECK(a::refresh_at(t0, t0 + 6h) == t0 + 6h - 5min);
  CHECK(a::refresh_at(t0, t0 + 4min) == t0 + 2min);
  CHECK(a::refresh_at(t0, t0 + 20s) == t0 + 10s);
}

TEST_CASE("settings: the standard endpoint overrides, most specific first") {
  std::map<std::string, std::string, std::less<>> vars;
  const auto env = [&vars](std::string_view n) -> std::optional<std::string> {
    const auto it = vars.find(n);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  auto s = std::get<a::aws_settings>(a::settings_from_env(env, ""));
  CHECK(s.cloudfront.host == "cloudfront.amazonaws.com");
  CHECK(s.sts.host == "sts.amazonaws.com");
  CHECK(s.sts_region == "us-east-1");
  CHECK(s.imds.host == "169.254.169.254");
  CHECK(!s.imds.tls);
  vars["AWS_REGION"] = "eu-west-1";
  s = std::get<a::aws_settings>(a::settings_from_env(env, ""));
  CHECK(s.sts.host == "sts.eu-west-1.amazonaws.com");
  CHECK(s.sts_region == "eu-west-1");
  vars["AWS_ENDPOINT_URL"] = "https://127.0.0.1:9000";
  vars["AWS_ENDPOINT_URL_STS"] = "https://127.0.0.1:9001";
  vars["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = "https://127.0.0.1:9002";
  vars["AWS_CA_BUNDLE"] = "/etc/test-ca.pem";
  vars["AWS_EC2_METADATA_DISABLED"] = "TRUE";
  s = std::get<a::aws_settings>(a::settings_from_env(env, "ops"));
  CHECK(s.cloudfront.port == 9000);
  CHECK(s.sts.port == 9001);
  CHECK(s.imds.port == 9002);
  CHECK(s.imds.tls);
  CHECK(s.ca_bundle == "/etc/test-ca.pem");
  CHECK(s.imds_disabled);
  CHECK(s.profile == "ops");
  vars["AWS_ENDPOINT_URL_CLOUDFRONT"] = "gopher://x";
  const auto bad = a::settings_from_env(env, "");
  REQUIRE(std::holds_alternative<std::string>(bad));
  CHECK(std::get<std::string>(bad).starts_with("AWS_ENDPOINT_URL_CLOUDFRONT: "));
}
