#include "config/load.hpp"
#include "validation/plan.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace cfg = wk::config;
namespace fs = std::filesystem;
using wk::validation::action_kind;
using wk::validation::plan;
using wk::validation::static_files;
using wk::validation::token_table;

namespace {

const std::string base = "version: 1\n"
                         "listen: [\"127.0.0.1:8080\"]\n"
                         "origin: http://127.0.0.1:8081\n"
                         "cloudfront: http://d111111abcdef8.cloudfront.net\n"
                         "domains: [example.com, www.example.com, \"*.shop.example\"]\n";

const std::string two_tokens =
    "tokens:\n"
    "  - domain: example.com\n"
    "    redirect_from: http://example.com/.well-known/pki-validation/aaa.txt\n"
    "    redirect_to: https://validation.us-east-1.acm-validations.aws/123/.well-known/"
    "pki-validation/aaa.txt\n"
    "  - domain: WWW.example.com\n"
    "    redirect_from: http://www.example.com/.well-known/pki-validation/bbb.txt\n"
    "    redirect_to: https://validation.us-east-1.acm-validations.aws/123/.well-known/"
    "pki-validation/bbb.txt\n"
    "    content: inline-bbb\n";

cfg::config load(const std::string& text) {
  auto r = cfg::load_string(text, "test.yaml", [](std::string_view) { return std::nullopt; });
  for (const auto& e : r.errors) {
    FAIL_CHECK(e.to_string());
  }
  REQUIRE(r.cfg);
  return *r.cfg;
}

std::vector<std::string> errors_of(const std::string& text) {
  auto r = cfg::load_string(text, "test.yaml", [](std::string_view) { return std::nullopt; });
  std::vector<std::string> out;
  for (const auto& e : r.errors) {
    out.push_back(e.to_string());
  }
  return out;
}

}  // namespace

TEST_CASE("tokens load with their parts") {
  auto c = load(base + two_tokens);
  REQUIRE(c.tokens.size() == 2);
  CHECK(c.tokens[0].domain == "example.com");
  CHECK(c.tokens[0].file == "aaa.txt");
  CHECK(c.tokens[0].to_host == "validation.us-east-1.acm-validations.aws");
  CHECK(c.tokens[0].to_port == 443);
  CHECK(c.tokens[0].to_target == "/123/.well-known/pki-validation/aaa.txt");
  CHECK_FALSE(c.tokens[0].has_content);
  CHECK(c.tokens[1].domain == "www.example.com");
  CHECK(c.tokens[1].content == "inline-bbb");
}

TEST_CASE("token and mode errors name the key") {
  const std::string tok = "tokens:\n  - domain: example.com\n";
  CHECK(errors_of(base + tok +
                  "    redirect_from: https://example.com/.well-known/pki-validation/a.txt\n"
                  "    redirect_to: https://v.example/a.txt\n") ==
        std::vector<std::string>{"test.yaml:8:20: tokens[0].redirect_from: must start with "
                                 "http:// (the CA fetches it over plain HTTP)"});
  CHECK(
      errors_of(base + tok +
                "    redirect_from: http://example.com/.well-known/pki-validation/a.txt\n"
                "    redirect_to: http://v.example/a.txt\n") ==
      std::vector<std::string>{"test.yaml:9:18: tokens[0].redirect_to: must start with https://"});
  CHECK(errors_of(base + tok +
                  "    redirect_from: http://example.com/other/a.txt\n"
                  "    redirect_to: https://v.example/a.txt\n") ==
        std::vector<std::string>{"test.yaml:8:20: tokens[0].redirect_from: the path must start "
                                 "with /.well-known/pki-validation/"});
  CHECK(errors_of(base + tok +
                  "    redirect_from: http://example.com/.well-known/pki-validation/../a.txt\n"
                  "    redirect_to: https://v.example/a.txt\n")
            .size() == 1);
  CHECK(errors_of(base + tok +
                  "    redirect_from: http://www.example.com/.well-known/pki-validation/a.txt\n"
                  "    redirect_to: https://v.example/a.txt\n") ==
        std::vector<std::string>{"test.yaml:8:20: tokens[0].redirect_from: the host must be the "
                                 "token's domain \"example.com\", got \"www.example.com\""});
  CHECK(
      errors_of(base + "tokens:\n  - domain: other.example\n"
                       "    redirect_from: http://other.example/.well-known/pki-validation/a.txt\n"
                       "    redirect_to: https://v.example/a.txt\n") ==
      std::vector<std::string>{
          "test.yaml:7:13: tokens[0].domain: \"other.example\" is not in the domains allow-list"});
  CHECK(errors_of(base + "tokens:\n  - domain: example.com\n") ==
        std::vector<std::string>{"test.yaml:7:5: tokens[0].redirect_from: missing required key",
                                 "test.yaml:7:5: tokens[0].redirect_to: missing required key"});
  CHECK(errors_of(base + "validation:\n  mode: mirror\n") ==
        std::vector<std::string>{"test.yaml:7:9: validation.mode: expected forward, redirect, "
                                 "fetch or static, got \"mirror\""});
  CHECK(errors_of(base + "validation:\n  redirect_status: 303\n") ==
        std::vector<std::string>{"test.yaml:7:20: validation.redirect_status: expected 301, 302, "
                                 "307 or 308, got \"303\""});
  CHECK(errors_of(base + "validation:\n  modes: {other.example: redirect}\n") ==
        std::vector<std::string>{"test.yaml:7:11: validation.modes.other.example: "
                                 "\"other.example\" is not in the domains allow-list"});
  CHECK(errors_of(base + "validation:\n  static_dir: /nonexistent/wk\n") ==
        std::vector<std::string>{"test.yaml:7:15: validation.static_dir: not a readable directory: "
                                 "\"/nonexistent/wk\""});
}

TEST_CASE("mode selection: exact name, then pattern, then the global mode") {
  auto c = load(base + "validation:\n  mode: redirect\n  modes:\n    www.example.com: fetch\n"
                       "    \"*.shop.example\": static\n    a.shop.example: forward\n");
  token_table t(c, {});
  CHECK(t.mode_for("example.com") == cfg::validation_mode::redirect);
  CHECK(t.mode_for("www.example.com") == cfg::validation_mode::fetch);
  CHECK(t.mode_for("b.shop.example") == cfg::validation_mode::static_files);
  CHECK(t.mode_for("a.shop.example") == cfg::validation_mode::forward);
}

TEST_CASE("plan: tokens decide what is diverted") {
  SUBCASE("forward with tokens: only token files; others reach the origin (or 404)") {
    auto c = load(base + two_tokens);
    token_table t(c, {});
    CHECK(plan(t, c.validation, "example.com", "aaa.txt").kind == action_kind::forward);
    CHECK(plan(t, c.validation, "example.com", "aaa.txt").token == &c.tokens[0]);
    CHECK(plan(t, c.validation, "example.com", "other-ca.txt").kind == action_kind::origin);
    CHECK(plan(t, c.validation, "example.com", "bbb.txt").kind == action_kind::origin);
    // A domain without tokens forwards any safe file name (nothing imported yet).
    CHECK(plan(t, c.validation, "x.shop.example", "zzz.txt").kind == action_kind::forward);
    c.validation.unknown_token = cfg::unknown_token_action::not_found;
    auto a = plan(t, c.validation, "example.com", "other-ca.txt");
    CHECK(a.kind == action_kind::not_found);
    CHECK(a.status == 404);
  }
  SUBCASE("redirect") {
    auto c = load(base + two_tokens + "validation:\n  mode: redirect\n  redirect_status: 308\n");
    token_table t(c, {});
    auto a = plan(t, c.validation, "example.com", "aaa.txt");
    CHECK(a.kind == action_kind::redirect);
    CHECK(a.status == 308);
    CHECK(a.token->redirect_to == "https://validation.us-east-1.acm-validations.aws/123/"
                                  ".well-known/pki-validation/aaa.txt");
    // No token, no RedirectTo: the unknown-token action.
    CHECK(plan(t, c.validation, "x.shop.example", "zzz.txt").kind == action_kind::origin);
  }
  SUBCASE("fetch") {
    auto c = load(base + two_tokens + "validation:\n  mode: fetch\n");
    token_table t(c, {});
    CHECK(plan(t, c.validation, "www.example.com", "bbb.txt").kind == action_kind::fetch);
    CHECK(plan(t, c.validation, "www.example.com", "nope.txt").kind == action_kind::origin);
  }
  SUBCASE("static: inline content first, then files") {
    auto c = load(base + two_tokens + "validation:\n  mode: static\n");
    static_files files;
    files.files[{"example.com", "aaa.txt"}] = "file-aaa";
    files.files[{"", "any.txt"}] = "file-any";
    token_table t(c, files);
    auto a = plan(t, c.validation, "www.example.com", "bbb.txt");
    REQUIRE(a.kind == action_kind::serve);
    CHECK(*a.body == "inline-bbb");
    a = plan(t, c.validation, "example.com", "aaa.txt");
    REQUIRE(a.kind == action_kind::serve);
    CHECK(*a.body == "file-aaa");
    // A domain without tokens is served any file found in the folder.
    a = plan(t, c.validation, "x.shop.example", "any.txt");
    REQUIRE(a.kind == action_kind::serve);
    CHECK(*a.body == "file-any");
    CHECK(plan(t, c.validation, "x.shop.example", "missing.txt").kind == action_kind::origin);
  }
}

TEST_CASE("static files: only safe regular files inside the folder") {
  char tmpl[] = "/tmp/wk-static-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  const fs::path root = tmpl;
  const fs::path outside = root.string() + "-outside";
  fs::create_directories(root / "example.com");
  fs::create_directories(outside);
  auto write = [](const fs::path& p, const std::string& text) { std::ofstream(p) << text; };
  write(root / "shared.txt", "shared");
  write(root / "example.com" / "tok.txt", "per-domain");
  write(outside / "secret.txt", "secret");
  write(root / "big.txt", std::string(static_files::max_file_bytes + 1, 'x'));
  fs::create_symlink(outside / "secret.txt", root / "escape.txt");
  fs::create_symlink(outside, root / "linked.example");
  fs::create_symlink(root / "shared.txt", root / "alias.txt");  // inside: allowed
  fs::create_directories(root / "Upper.Example");
  std::vector<std::string> warnings;
  auto files = static_files::load(root.string(), warnings);
  CHECK(files.find("any.example", "shared.txt") != nullptr);
  CHECK(*files.find("example.com", "tok.txt") == "per-domain");
  CHECK(files.find("other.example", "tok.txt") == nullptr);
  CHECK(*files.find("x", "alias.txt") == "shared");
  CHECK(files.find("x", "escape.txt") == nullptr);
  CHECK(files.find("linked.example", "secret.txt") == nullptr);
  CHECK(files.find("x", "big.txt") == nullptr);
  CHECK(warnings.size() == 4);  // escape.txt, linked.example, big.txt, Upper.Example
  fs::remove_all(root);
  fs::remove_all(outside);
}

// Issue 18, finding 10: static mode served any file of static_dir whose name passed the
// character check, dotfiles included: ".hidden", an editor's ".x.txt.swp" swap file (the
// content of x.txt being edited). A name starting with "." is never a token and never served,
// in any component below static_dir; such a request gets what an unknown token gets.
TEST_CASE("static files: names starting with a dot are never served") {
  char tmpl[] = "/tmp/wk-static-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  const fs::path root = tmpl;
  auto write = [](const fs::path& p, const std::string& text) { std::ofstream(p) << text; };
  fs::create_directories(root / "example.com");
  fs::create_directories(root / ".git");
  write(root / "x.txt", "token-x");
  write(root / ".hidden", "hidden");
  write(root / ".x.txt.swp", "swap file of x.txt");
  write(root / "example.com" / ".y.txt.swp", "swap file of y.txt");
  write(root / ".git" / "config", "[remote] url = secret");
  // A visible name that leads into a hidden directory is not served either.
  fs::create_symlink(root / ".git" / "config", root / "linked.txt");
  std::vector<std::string> warnings;
  auto files = static_files::load(root.string(), warnings);
  CHECK(*files.find("example.com", "x.txt") == "token-x");
  for (const char* name : {".hidden", ".x.txt.swp", ".y.txt.swp", "config", "linked.txt"}) {
    CAPTURE(std::string(name));
    CHECK(files.find("example.com", name) == nullptr);
    CHECK(files.find("", name) == nullptr);
  }

  // The decision: the unknown-token action (origin by default, or 404), never the file, even
  // when the file is in the table (a table built by other means).
  auto c = load(base + "validation:\n  mode: static\n");
  files.files[{"", ".hidden"}] = "hidden";
  files.files[{"example.com", ".x.txt.swp"}] = "swap";
  token_table t(c, files);
  for (const char* name : {".hidden", ".x.txt.swp"}) {
    CAPTURE(std::string(name));
    auto a = plan(t, c.validation, "example.com", name);
    CHECK(a.kind == action_kind::origin);
    CHECK(a.body == nullptr);
  }
  c.validation.unknown_token = cfg::unknown_token_action::not_found;
  auto a = plan(t, c.validation, "example.com", ".hidden");
  CHECK(a.kind == action_kind::not_found);
  CHECK(a.status == 404);
  CHECK(plan(t, c.validation, "example.com", "x.txt").kind == action_kind::serve);
  // Each skipped entry is named: .hidden, .x.txt.swp, .y.txt.swp, .git, linked.txt.
  CHECK(warnings.size() == 5);
  fs::remove_all(root);
}
