// The API's tenants merged into a loaded config: their tokens replace the same tenant's, other
// tenants' stay, domains join the allow-list.

#include "config/load.hpp"
#include "config/tenant_merge.hpp"

#include <doctest/doctest.h>

namespace c = wk::config;

namespace {

c::config loaded() {
  const auto r = c::load_string(R"(version: 1
listen: ["127.0.0.1:8080"]
origin: http://127.0.0.1:8081
cloudfront: http://127.0.0.1:8082
domains: [a.example.com]
tokens:
  - {tenant: one, domain: a.example.com, redirect_from: "http://a.example.com/.well-known/pki-validation/old.txt", redirect_to: "https://validation.us-east-1.acm-validations.aws/1/.well-known/pki-validation/old.txt"}
  - {tenant: two, domain: a.example.com, redirect_from: "http://a.example.com/.well-known/pki-validation/two.txt", redirect_to: "https://validation.us-east-1.acm-validations.aws/1/.well-known/pki-validation/two.txt"}
)",
                                "test.yaml", [](std::string_view) { return std::nullopt; });
  REQUIRE(r.errors.empty());
  return *r.cfg;
}

c::token_entry entry(std::string domain, std::string file, std::string tenant) {
  return {domain, domain + "/.well-known/pki-validation/" + file,
          "validation.us-east-1.acm-validations.aws/1/.well-known/pki-validation/" + file + "x",
          std::move(tenant)};
}

}  // namespace

TEST_CASE("merge: one tenant's tokens replaced, the other's kept, domains allowed") {
  auto cfg = loaded();
  const auto warnings = c::merge_api_tenants(
      cfg, {{"one",
             {"a.example.com", "b.example.com"},
             {entry("a.example.com", "new.txt", "one"), entry("b.example.com", "b.txt", "one")}}});
  CHECK(warnings.empty());
  REQUIRE(cfg.tokens.size() == 3);
  CHECK(cfg.tokens[0].tenant == "two");
  CHECK(cfg.tokens[1].file == "new.txt");
  CHECK(cfg.tokens[1].redirect_from ==
        "http://a.example.com/.well-known/pki-validation/new.txt");  // the scheme added
  CHECK(cfg.tokens[1].redirect_to.starts_with("https://validation.us-east-1"));
  CHECK(cfg.tokens[1].to_host == "validation.us-east-1.acm-validations.aws");
  CHECK(cfg.tokens[2].domain == "b.example.com");
  CHECK(cfg.validation.domains == std::vector<std::string>{"a.example.com", "b.example.com"});
}

TEST_CASE("merge: a file another tenant has on the same domain is skipped with a warning") {
  auto cfg = loaded();
  const auto warnings =
      c::merge_api_tenants(cfg, {{"three", {}, {entry("a.example.com", "two.txt", "three")}}});
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find("tenant two has the same file") != std::string::npos);
  CHECK(cfg.tokens.size() == 2);
}

TEST_CASE("merge: a tenant with domains but no tokens yet keeps the file's tokens") {
  auto cfg = loaded();
  const auto warnings = c::merge_api_tenants(cfg, {{"one", {"c.example.com", "*.x.com"}, {}}});
  REQUIRE(warnings.size() == 1);
  CHECK(cfg.tokens.size() == 2);
  CHECK(cfg.validation.domains.back() == "c.example.com");
}
