// The tenants' side of the status page and metrics: rendering (hostile text escaped, bounded
// labels), and folding poll reports (the last good parts kept).

#include "app/status_page.hpp"
#include "app/tenants.hpp"

#include <boost/json/parse.hpp>

#include <doctest/doctest.h>

namespace app = wk::app;
namespace json = boost::json;

namespace {

app::status_snapshot with_tenant() {
  app::status_snapshot s;
  s.now = std::chrono::system_clock::time_point(std::chrono::seconds(1'796'526'245));
  s.credentials_source = "profile <deploy>";
  app::status_snapshot::tenant_state t;
  t.tenant = "dt_1";
  t.name = "<script>alert(1)</script>";
  t.certificate_status = "issued";
  t.routing_endpoint = "d111111abcdef8.cloudfront.net";
  t.last_success = s.now;
  app::status_snapshot::tenant_domain d;
  d.domain = "shop.example.com";
  d.stage = "switch_dns";
  d.sentence = "issued: switch DNS now: CNAME shop.example.com → d111111abcdef8.cloudfront.net";
  d.dns_record = "CNAME shop.example.com → d111111abcdef8.cloudfront.net";
  d.dns_status = "invalid-configuration";
  d.token_files = {"a.txt"};
  t.domains.push_back(d);
  s.tenants.push_back(t);
  return s;
}

}  // namespace

TEST_CASE("status page: a Tenants section with each domain's stage, text escaped") {
  const auto html = app::render_status_html(with_tenant());
  CHECK(html.find("<section id=\"tenants\"") != std::string::npos);
  CHECK(html.find("data-tenant=\"dt_1\" data-domain=\"shop.example.com\" "
                  "data-stage=\"switch_dns\"") != std::string::npos);
  CHECK(html.find("<script>alert") == std::string::npos);
  CHECK(html.find("&lt;script&gt;") != std::string::npos);
  CHECK(html.find("profile &lt;deploy&gt;") != std::string::npos);
  // No aws: no section.
  CHECK(app::render_status_html(app::status_snapshot{}).find("id=\"tenants\"") ==
        std::string::npos);
}

TEST_CASE("status.json: tenants with their domains' journey") {
  const auto doc = json::parse(app::render_status_json(with_tenant()));
  const auto& t = doc.at("tenants").at(0);
  CHECK(t.at("tenant") == "dt_1");
  CHECK(t.at("certificate_status") == "issued");
  const auto& d = t.at("domains").at(0);
  CHECK(d.at("stage") == "switch_dns");
  CHECK(d.at("dns_record") == "CNAME shop.example.com → d111111abcdef8.cloudfront.net");
  CHECK(d.at("last_fetch").is_null());
  CHECK(doc.at("credentials") == "profile <deploy>");
  CHECK(!json::parse(app::render_status_json(app::status_snapshot{}))
             .as_object()
             .contains("tenants"));
}

TEST_CASE("metrics: one stage series per domain, labels escaped and bounded") {
  auto s = with_tenant();
  s.tenants[0].tenant = "we\"ird\\";
  app::api_stats stats;
  stats.count("GetManagedCertificateDetails", "ok");
  stats.count("GetManagedCertificateDetails", "Throttling");
  stats.count("GetManagedCertificateDetails", "SomethingNew");
  const auto text = app::tenant_metrics(s.tenants, &stats);
  CHECK(
      text.find("wkproxy_tenant_domain_stage{tenant=\"we\\\"ird\\\\\",domain=\"shop.example.com\","
                "stage=\"switch_dns\"} 1") != std::string::npos);
  CHECK(text.find("wkproxy_tenant_certificate_issued{tenant=\"we\\\"ird\\\\\"} 1") !=
        std::string::npos);
  CHECK(text.find("outcome=\"Throttling\"} 1") != std::string::npos);
  CHECK(text.find("outcome=\"other\"} 1") != std::string::npos);
  CHECK(text.find("SomethingNew") == std::string::npos);
  // At most max_domain_series domain series, however many domains.
  auto many = with_tenant();
  many.tenants[0].domains.resize(app::max_domain_series + 50, many.tenants[0].domains[0]);
  const auto big = app::tenant_metrics(many.tenants, nullptr);
  std::size_t series = 0;
  for (auto at = big.find("wkproxy_tenant_domain_stage{"); at != std::string::npos;
       at = big.find("wkproxy_tenant_domain_stage{", at + 1)) {
    ++series;
  }
  CHECK(series == app::max_domain_series);
}

TEST_CASE("reports: a failed poll keeps the last good tokens, domains and status") {
  app::tenant_record r;
  app::tenant_report ok;
  ok.tenant = "dt_1";
  ok.at = std::chrono::system_clock::time_point(std::chrono::seconds(100));
  ok.have_certificate = true;
  ok.certificate.status = "pending-validation";
  ok.certificate.tokens = {{"a.example.com",
                            "http://a.example.com/.well-known/pki-validation/x.txt",
                            "https://v.example/x.txt", "dt_1"}};
  ok.have_tenant = true;
  ok.distribution.domains = {{"a.example.com", "active"}};
  app::fold_report(r, ok);
  CHECK(r.last_error.empty());
  CHECK(r.last_success == ok.at);

  app::tenant_report failed;
  failed.tenant = "dt_1";
  failed.at = std::chrono::system_clock::time_point(std::chrono::seconds(200));
  failed.error = "GetManagedCertificateDetails: AccessDenied (HTTP 403): no";
  app::fold_report(r, failed);
  CHECK(r.last_error == failed.error);
  CHECK(r.last_success == ok.at);
  CHECK(r.last.certificate.tokens.size() == 1);
  CHECK(r.last.certificate.status == "pending-validation");

  // Issued, without tokens in the answer: the status moves on, the tokens stay.
  app::tenant_report issued = ok;
  issued.certificate.status = "issued";
  issued.certificate.tokens.clear();
  app::fold_report(r, issued);
  CHECK(r.last.certificate.status == "issued");
  CHECK(r.last.certificate.tokens.size() == 1);

  const auto merged = app::api_tenants({{"dt_1", r}});
  REQUIRE(merged.size() == 1);
  CHECK(merged[0].domains == std::vector<std::string>{"a.example.com"});
  CHECK(merged[0].tokens.size() == 1);
}
