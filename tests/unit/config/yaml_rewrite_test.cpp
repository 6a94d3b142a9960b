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
     "https://validation.us-east-1.acm-validations.aws/1/a", ""}};

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
  CHECK(c::tokens_block({}, "\r\n") == "tokens: []\r\n");
  auto tagged = one_token;
  tagged[0].tenant = "dt_2wjDZi3hD1ivOXf6rpZJOSNE1AB";
  CHECK(c::tokens_block(tagged, "\n") ==
        "tokens:\n"
        "  - domain: example.com\n"
        "    tenant: \"dt_2wjDZi3hD1ivOXf6rpZJOSNE1AB\"\n"
        "    redirect_from: \"http://example.com/.well-known/pki-validation/a.txt\"\n"
        "    redirect_to: \"https://validation.us-east-1.acm-validations.aws/1/a\"\n");
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

TEST_CASE("rewrite_tokens replaces the same domain's token, adds the domains asked for, keeps "
          "the rest") {
  const std::string before = "# head\n"
                             "domains:   # allowed\n"
                             "  - old.example\n"
                             "tokens:\n"
                             "  - domain: example.com\n"
                             "    redirect_from: http://example.com/.well-known/pki-validation/o\n"
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

namespace {

c::token_entry entry(std::string domain, std::string file, std::string tenant) {
  return {domain, "http://" + domain + "/.well-known/pki-validation/" + file,
          "https://validation.us-east-1.acm-validations.aws/1/" + file, std::move(tenant)};
}

std::string item(const c::token_entry& t) {
  return c::token_item(t, "\n");
}

}  // namespace

TEST_CASE("a second tenant's import keeps the first tenant's tokens") {
  const auto a1 = entry("a.example", "a1.txt", "dt_A");
  const auto a2 = entry("www.a.example", "a2.txt", "dt_A");
  const auto b1 = entry("b.example", "b1.txt", "dt_B");
  const std::string first = c::rewrite_tokens("domains: []\n", {a1, a2}, {}).text;
  const auto second = c::rewrite_tokens(first, {b1}, {}, "dt_B");
  REQUIRE(second.error.empty());
  CHECK(second.removed_tokens == 0);
  CHECK(second.kept_tokens == 2);
  CHECK(second.text.ends_with("tokens:\n" + item(a1) + item(a2) + item(b1)));

  SUBCASE("re-importing a tenant replaces its tokens where they were, and only them") {
    const auto a3 = entry("a.example", "a3.txt", "dt_A");
    const auto again = c::rewrite_tokens(second.text, {a3}, {}, "dt_A");
    REQUIRE(again.error.empty());
    CHECK(again.removed_tokens == 2);
    CHECK(again.kept_tokens == 1);
    CHECK(again.removed_domains == std::vector<std::string>{"a.example", "www.a.example"});
    CHECK(again.text.ends_with("tokens:\n" + item(a3) + item(b1)));
    // The same import once more changes nothing.
    CHECK(c::rewrite_tokens(again.text, {a3}, {}, "dt_A").text == again.text);
  }
  SUBCASE("removing a tenant (no new tokens) takes out its items only") {
    const auto r = c::rewrite_tokens(second.text, {}, {}, "dt_A");
    CHECK(r.removed_tokens == 2);
    CHECK(r.kept_tenants == std::vector<std::string>{"dt_B"});
    CHECK(r.text.ends_with("tokens:\n" + item(b1)));
    const auto empty = c::rewrite_tokens(r.text, {}, {}, "dt_B");
    CHECK(empty.text.ends_with("tokens: []\n"));
    CHECK(c::rewrite_tokens(empty.text, {}, {}, "dt_C").removed_tokens == 0);
  }
}

TEST_CASE("kept items stay byte for byte: comments, ${VAR} and hand-written style") {
  const std::string hand =
      "tokens:   # managed by wkproxy tokens import\n"
      "  # tenant B, pasted by hand\n"
      "  - domain: b.example   # the shop\n"
      "    tenant: dt_B\n"
      "    redirect_from: http://b.example/.well-known/pki-validation/b.txt\n"
      "    redirect_to: ${ACM_URL}\n"
      "    # end of B\n"
      "  - {domain: c.example, tenant: dt_C, redirect_from: x, redirect_to: y}\n";
  const auto a1 = entry("a.example", "a1.txt", "dt_A");
  const auto r = c::rewrite_tokens(hand, {a1}, {}, "dt_A");
  REQUIRE(r.error.empty());
  CHECK(r.text == hand + item(a1));
  CHECK(r.kept_tenants == std::vector<std::string>{"dt_B", "dt_C"});
}

TEST_CASE("untagged items: replaced when on the tenant's domains, kept otherwise") {
  const std::string old = "tokens:\n"
                          "  - domain: A.example\n"
                          "    redirect_from: http://a.example/.well-known/pki-validation/o\n"
                          "  - domain: z.example\n"
                          "    redirect_from: http://z.example/.well-known/pki-validation/z\n";
  const auto a1 = entry("a.example", "a1.txt", "dt_A");
  const auto r = c::rewrite_tokens(old, {a1}, {}, "dt_A");
  CHECK(r.removed_tokens == 1);
  CHECK(r.text == "tokens:\n" + item(a1) +
                      "  - domain: z.example\n"
                      "    redirect_from: http://z.example/.well-known/pki-validation/z\n");
}

TEST_CASE("another tenant's tokens on the same domain are kept, with a warning") {
  const auto b1 = entry("shared.example", "b1.txt", "dt_B");
  const auto a1 = entry("shared.example", "a1.txt", "dt_A");
  const std::string text = c::tokens_block({b1}, "\n");
  const auto r = c::rewrite_tokens(text, {a1}, {}, "dt_A");
  CHECK(r.kept_tokens == 1);
  REQUIRE(r.warnings.size() == 1);
  CHECK(r.warnings[0].find("tokens of tenant \"dt_B\" for shared.example are kept") == 0);
  // Two tenants may use the same file name on different domains.
  const auto b2 = entry("b.example", "same.txt", "dt_B");
  const auto a2 = entry("a.example", "same.txt", "dt_A");
  const auto both = c::rewrite_tokens(c::tokens_block({b2}, "\n"), {a2}, {}, "dt_A");
  CHECK(both.text == "tokens:\n" + item(b2) + item(a2));
}

TEST_CASE("a tokens block that cannot be edited safely is refused, nothing produced") {
  const auto a1 = entry("a.example", "a1.txt", "dt_A");
  for (const std::string text :
       {"tokens: [{domain: a.example}]\n", "tokens:\n  domain: a.example\n",
        "tokens:\n  - domain: [unclosed\n"}) {
    CAPTURE(text);
    const auto r = c::rewrite_tokens(text, {a1}, {}, "dt_A");
    CHECK(r.error.find("the tokens block cannot be edited safely") == 0);
    CHECK(r.text.empty());
  }
  // An empty flow list is fine.
  const auto r = c::rewrite_tokens("tokens: []  # none yet\nworkers: 1\n", {a1}, {}, "dt_A");
  CHECK(r.error.empty());
  CHECK(r.text == "tokens:  # none yet\n" + item(a1) + "workers: 1\n");
}
