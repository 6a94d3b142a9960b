// The config text rewriter behind `wkproxy tokens import --write`: the tokens block replaced or
// appended, the allow-list extended in its own style, every other byte left alone. Which
// domains are missing from the allow-list is the caller's decision (tests/unit/cli).

#include "config/yaml_rewrite.hpp"

#include <doctest/doctest.h>

#include <string>
#include <variant>
#include <vector>

namespace c = wk::config;

namespace {

const std::vector<c::token_entry> one_token{
    {"example.com", "http://example.com/.well-known/pki-validation/a.txt",
     "https://validation.us-east-1.acm-validations.aws/1/a"}};

constexpr std::string_view one_token_lines =
    "tokens:\n"
    "  - domain: example.com\n"
    "    redirect_from: \"http://example.com/.well-known/pki-validation/a.txt\"\n"
    "    redirect_to: \"https://validation.us-east-1.acm-validations.aws/1/a\"\n";

std::vector<std::string> items_of(std::string_view text) {
  auto r = c::domain_list_items(text);
  REQUIRE_MESSAGE(std::holds_alternative<std::vector<std::string>>(r), std::get<std::string>(r));
  return std::get<std::vector<std::string>>(r);
}

std::string reason_of(std::string_view text) {
  auto r = c::domain_list_items(text);
  REQUIRE(std::holds_alternative<std::string>(r));
  return std::get<std::string>(r);
}

}  // namespace

TEST_CASE("yaml_quoted escapes quotes and backslashes and doubles $") {
  CHECK(c::yaml_quoted("a") == "\"a\"");
  CHECK(c::yaml_quoted(R"(a"b\c)") == R"("a\"b\\c")");
  CHECK(c::yaml_quoted("${X}") == "\"$${X}\"");
}

TEST_CASE("tokens_block renders one entry per token with the given line ending") {
  CHECK(c::tokens_block(one_token, "\n") == one_token_lines);
  CHECK(c::tokens_block({}, "\r\n") == "tokens:\r\n");
}

TEST_CASE("domain_list_items reads flow and block lists, top-level or under validation") {
  CHECK(items_of("domains: [a.example, \"b.example\", 'c.example']  # x\n") ==
        std::vector<std::string>{"a.example", "b.example", "c.example"});
  CHECK(items_of("domains:\n  - a.example\n  - \"*.b.example\"\nworkers: 2\n") ==
        std::vector<std::string>{"a.example", "*.b.example"});
  CHECK(items_of("validation:\n  domains: [a.example]\n") == std::vector<std::string>{"a.example"});
  CHECK(items_of("domains: []\n").empty());
  CHECK(reason_of("workers: 2\n") == "the config has no domains list");
  CHECK(reason_of("domains: a.example\n") == "it is not a list");
  CHECK(reason_of("domains: [[a]]\n") == "it is not a simple list on one line");
}

TEST_CASE("rewrite_tokens replaces the block, adds the domains asked for, keeps the rest") {
  const std::string before = "# head\n"
                             "domains:   # allowed\n"
                             "  - old.example\n"
                             "tokens:\n"
                             "  - domain: old.example\n"
                             "\n"
                             "workers: 2\n";
  const auto r = c::rewrite_tokens(before, one_token, {"example.com"});
  CHECK(r.replaced);
  CHECK(r.warnings.empty());
  CHECK(r.added_domains == std::vector<std::string>{"example.com"});
  CHECK(r.text == "# head\n"
                  "domains:   # allowed\n"
                  "  - old.example\n"
                  "  - example.com\n" +
                      std::string(one_token_lines) +
                      "\n"
                      "workers: 2\n");
  // Nothing to add: the allow-list stays as it is.
  CHECK(c::rewrite_tokens(r.text, one_token, {}).text == r.text);
}

TEST_CASE("rewrite_tokens appends a block, keeps CRLF, and warns about a list it cannot edit") {
  const auto r = c::rewrite_tokens("domains: example.com\r\n", one_token, {"example.com"});
  CHECK_FALSE(r.replaced);
  CHECK(r.added_domains.empty());
  REQUIRE(r.warnings.size() == 1);
  CHECK(r.warnings[0] == "cannot add domains to the allow-list (it is not a list): add "
                         "example.com to domains by hand");
  CHECK(r.text == "domains: example.com\r\n"
                  "\r\n"
                  "# ACM HTTP validation tokens, from get-managed-certificate-details "
                  "(wkproxy tokens import)\r\n"
                  "tokens:\r\n"
                  "  - domain: example.com\r\n"
                  "    redirect_from: \"http://example.com/.well-known/pki-validation/a.txt\"\r\n"
                  "    redirect_to: \"https://validation.us-east-1.acm-validations.aws/1/a\"\r\n");
}
