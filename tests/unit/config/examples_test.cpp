#include "config/load.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace cfg = wk::config;
namespace fs = std::filesystem;

namespace {

// A fixed environment, so the examples load the same everywhere.
cfg::env_lookup example_env() {
  static const std::map<std::string, std::string, std::less<>> vars{
      {"WKPROXY_CA_FILE", std::string(WK_FIXTURES_DIR) + "/config/ca.pem"}};
  return [](std::string_view name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) {
      return std::nullopt;
    }
    return it->second;
  };
}

std::vector<fs::path> example_files() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(fs::path(WK_SOURCE_DIR) / "config")) {
    if (entry.is_regular_file() && entry.path().extension() == ".yaml") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

cfg::config load_example(const std::string& name) {
  const auto result =
      cfg::load_file((fs::path(WK_SOURCE_DIR) / "config" / name).string(), example_env());
  REQUIRE(result.cfg.has_value());
  return *result.cfg;
}

}  // namespace

TEST_CASE("every example config loads without errors") {
  const auto files = example_files();
  CHECK(files.size() >= 3);
  for (const fs::path& file : files) {
    CAPTURE(file.string());
    const auto result = cfg::load_file(file.string(), example_env());
    std::string errors;
    for (const cfg::error& e : result.errors) {
      errors += e.to_string() + "\n";
    }
    CHECK_MESSAGE(result.errors.empty(), errors);
    CHECK(result.cfg.has_value());
  }
}

TEST_CASE("the example configs say what they promise") {
  SUBCASE("minimal.yaml is the DESIGN.md contract") {
    const auto c = load_example("minimal.yaml");
    REQUIRE(c.listen.size() == 1);
    CHECK(c.listen[0].address == "127.0.0.1:8080");
    CHECK(c.origin.url == "http://127.0.0.1:8081");
    CHECK(c.cloudfront.host == "d111111abcdef8.cloudfront.net");
    CHECK(c.validation.domains == std::vector<std::string>{"example.com", "www.example.com"});
  }
  SUBCASE("wkproxy.yaml spells out the defaults") {
    const auto c = load_example("wkproxy.yaml");
    const cfg::config defaults;
    CHECK(c.validation.prefix == defaults.validation.prefix);
    CHECK(c.validation.methods == defaults.validation.methods);
    CHECK(c.timeouts.connect == defaults.timeouts.connect);
    CHECK(c.timeouts.header_read == defaults.timeouts.header_read);
    CHECK(c.timeouts.idle == defaults.timeouts.idle);
    CHECK(c.timeouts.upstream_response == defaults.timeouts.upstream_response);
    CHECK(c.timeouts.upstream_idle == defaults.timeouts.upstream_idle);
    CHECK(c.timeouts.body_idle == defaults.timeouts.body_idle);
    CHECK(c.timeouts.tunnel_idle == defaults.timeouts.tunnel_idle);
    CHECK(c.limits.header_bytes == defaults.limits.header_bytes);
    CHECK(c.limits.header_count == defaults.limits.header_count);
    CHECK(c.limits.target_bytes == defaults.limits.target_bytes);
    CHECK(c.limits.max_connections == defaults.limits.max_connections);
    CHECK(c.limits.max_body_bytes == defaults.limits.max_body_bytes);
    CHECK(c.limits.max_requests_per_connection == defaults.limits.max_requests_per_connection);
    CHECK(c.limits.max_pipelined == defaults.limits.max_pipelined);
    CHECK(c.headers.x_forwarded_for == defaults.headers.x_forwarded_for);
    CHECK(c.headers.x_forwarded_proto == defaults.headers.x_forwarded_proto);
    CHECK(c.dns.refresh == defaults.dns.refresh);
    CHECK(c.access_log == defaults.access_log);
    CHECK(c.log_level == defaults.log_level);
    CHECK(c.workers == defaults.workers);
  }
  SUBCASE("https-cloudfront.yaml reaches CloudFront over verified TLS") {
    const auto c = load_example("https-cloudfront.yaml");
    CHECK(c.cloudfront.tls);
    CHECK(c.cloudfront.port == 443);
    CHECK(c.cloudfront.sni == "d111111abcdef8.cloudfront.net");
    CHECK(c.cloudfront.verify);
    CHECK(c.cloudfront.ca_file == std::string(WK_FIXTURES_DIR) + "/config/ca.pem");
  }
  SUBCASE("ports-80-443.yaml answers validation on 80 and passes 443 through") {
    const auto c = load_example("ports-80-443.yaml");
    REQUIRE(c.listen.size() == 4);
    for (std::size_t i = 0; i < 2; ++i) {
      CHECK(c.listen[i].port == 80);
      CHECK(c.listen[i].mode == cfg::listener_mode::http);
      CHECK(c.listen[i + 2].port == 443);
      CHECK(c.listen[i + 2].mode == cfg::listener_mode::passthrough);
      CHECK(c.listen[i + 2].passthrough.host == "127.0.0.1");
      CHECK(c.listen[i + 2].passthrough.port == 8443);
      CHECK(c.listen[i + 2].certificates.empty());  // no key needed
    }
  }
}
