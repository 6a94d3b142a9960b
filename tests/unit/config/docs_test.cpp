// The configuration reference cannot drift from the loader: every key the loader accepts (it
// lists them itself in its "unknown key" error) must be in the reference table of
// docs/configuration.md and in config/wkproxy.yaml, the file that documents every key.

#include "config/load.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace cfg = wk::config;

namespace {

std::string read(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// The keys the loader accepts where `probe` puts an unknown key "zzz" (from its error text
// "...: unknown key (expected one of: a, b, c)").
std::vector<std::string> known_keys(const std::string& doc) {
  const auto result = cfg::load_string(
      doc, "probe.yaml", [](std::string_view) { return std::optional<std::string>{}; });
  for (const auto& e : result.errors) {
    const auto at = e.reason.find("expected one of: ");
    if (e.key.ends_with("zzz") && at != std::string::npos) {
      std::vector<std::string> keys;
      std::string list = e.reason.substr(at + 17);
      list.pop_back();  // ")"
      std::stringstream s(list);
      for (std::string k; std::getline(s, k, ',');) {
        keys.push_back(k.substr(k.find_first_not_of(' ')));
      }
      return keys;
    }
  }
  FAIL("no unknown-key error for the probe:\n" << doc);
  return {};
}

const std::string base = "version: 1\n"
                         "origin: http://127.0.0.1:1\n"
                         "cloudfront: http://127.0.0.1:2\n"
                         "domains: [example.com]\n";

// The reference table row that starts with `name`.
std::string row(const std::string& reference, const std::string& name) {
  const auto at = reference.find("\n| `" + name + "` |");
  if (at == std::string::npos) {
    return {};
  }
  return reference.substr(at + 1, reference.find('\n', at + 1) - at - 1);
}

}  // namespace

TEST_CASE("every config key is documented in docs/configuration.md and config/wkproxy.yaml") {
  const std::string reference = read(std::string(WK_SOURCE_DIR) + "/docs/configuration.md");
  const std::string example = read(std::string(WK_SOURCE_DIR) + "/config/wkproxy.yaml");
  REQUIRE(!reference.empty());
  REQUIRE(!example.empty());
  struct section {
    std::string doc;      // a config with "zzz" where the section's keys go
    std::string prefix;   // how the reference names its keys ("" for top level)
    bool in_row = false;  // keys listed inside one row, e.g. `origin` | URL or `{url, sni, ...}`
  };
  const std::string listen = "listen: [\"127.0.0.1:8080\"]\n";
  const std::vector<section> sections{
      {base + listen + "zzz: 1\n", ""},
      {base + "listen: [{address: \"127.0.0.1:1\", zzz: 1}]\n", "listen[]."},
      {"version: 1\n" + listen + "origin: {url: \"http://a:1\", zzz: 1}\n" +
           "cloudfront: http://b:2\ndomains: [example.com]\n",
       "origin", true},
      {base + listen + "validation: {zzz: 1}\n", "validation."},
      {base + listen + "timeouts: {zzz: 1}\n", "timeouts."},
      {base + listen + "limits: {zzz: 1}\n", "limits."},
      {base + listen + "headers: {zzz: 1}\n", "headers."},
      {base + listen + "dns: {zzz: 1}\n", "dns."},
      {base + listen + "shutdown: {zzz: 1}\n", "shutdown."},
      {base + listen + "access_log: {zzz: 1}\n", "access_log."},
      {base + listen + "admin: {zzz: 1}\n", "admin."},
      {base + listen + "aws: {tenants: [a], zzz: 1}\n", "aws."},
      {base + listen + "tokens: [{zzz: 1}]\n", "tokens", true},
      {base + "listen: [{address: \"127.0.0.1:1\", mode: tls, certificates: [{zzz: 1}]}]\n",
       "listen[].certificates", true},
  };
  for (const auto& s : sections) {
    const auto keys = known_keys(s.doc);
    CHECK(!keys.empty());
    for (const auto& k : keys) {
      CAPTURE(s.prefix);
      CAPTURE(k);
      if (s.in_row) {
        CHECK(row(reference, s.prefix).find(k) != std::string::npos);
      } else if (s.prefix == "listen[]." && k == "address") {
        CHECK(reference.find("{address: ...}") != std::string::npos);
      } else if (s.prefix.empty() && reference.find("\n| `" + k + ".") != std::string::npos) {
        // A section: its keys have rows of their own, checked below.
      } else if (s.prefix == "validation." && k == "domains") {
        CHECK(reference.find("`validation.domains`") != std::string::npos);
      } else {
        CHECK_MESSAGE(!row(reference, s.prefix + k).empty(),
                      "docs/configuration.md has no reference row for `" << s.prefix << k << "`");
      }
      CHECK_MESSAGE(example.find(k + ":") != std::string::npos,
                    "config/wkproxy.yaml does not mention " << k);
    }
  }
}
