#include "config/env_subst.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <map>
#include <string>

namespace cfg = wk::config;

namespace {

cfg::env_lookup fake_env() {
  static const std::map<std::string, std::string, std::less<>> vars{
      {"HOST", "example.com"}, {"PORT", "8080"}, {"EMPTY", ""}, {"_x1", "under"}};
  return [](std::string_view name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) {
      return std::nullopt;
    }
    return it->second;
  };
}

}  // namespace

TEST_CASE("substitution replaces references and keeps everything else") {
  struct row {
    std::string_view in;
    std::string_view out;
  };
  const row rows[] = {
      {"", ""},
      {"plain", "plain"},
      {"${HOST}", "example.com"},
      {"http://${HOST}:${PORT}/", "http://example.com:8080/"},
      {"${_x1}", "under"},
      {"${MISSING:-fallback}", "fallback"},
      {"${MISSING:-}", ""},
      {"${HOST:-fallback}", "example.com"},
      {"${EMPTY}", ""},
      {"${EMPTY:-used when empty}", "used when empty"},
      {"${MISSING:-a:-b$c{}", "a:-b$c{"},
      {"$$", "$"},
      {"$${HOST}", "${HOST}"},
      {"$$$$", "$$"},
      {"cost: $5", "cost: $5"},
      {"$HOST", "$HOST"},
      {"trailing $", "trailing $"},
      {"${HOST}${PORT}", "example.com8080"},
  };
  const auto env = fake_env();
  for (const row& r : rows) {
    CAPTURE(r.in);
    const auto result = cfg::substitute_env(r.in, env);
    REQUIRE(std::holds_alternative<std::string>(result));
    CHECK(std::get<std::string>(result) == r.out);
  }
}

TEST_CASE("substitution reports the first problem") {
  struct row {
    std::string_view in;
    std::string_view reason;
  };
  const row rows[] = {
      {"${MISSING}", "environment variable MISSING is not set"},
      {"a ${HOST} ${NOPE} ${ALSO_NOPE}", "environment variable NOPE is not set"},
      {"${HOST", "unterminated \"${\" (missing \"}\")"},
      {"x${", "unterminated \"${\" (missing \"}\")"},
      {"${}", "invalid environment variable name \"\""},
      {"${1X}", "invalid environment variable name \"1X\""},
      {"${A-B}", "invalid environment variable name \"A-B\""},
      {"${A:B}", "invalid environment variable name \"A:B\""},
      {"${ HOST}", "invalid environment variable name \" HOST\""},
      {"${:-x}", "invalid environment variable name \"\""},
  };
  const auto env = fake_env();
  for (const row& r : rows) {
    CAPTURE(r.in);
    const auto result = cfg::substitute_env(r.in, env);
    REQUIRE(std::holds_alternative<cfg::subst_error>(result));
    CHECK(std::get<cfg::subst_error>(result).reason == r.reason);
  }
}

TEST_CASE("process_env reads the real environment") {
  const auto env = cfg::process_env();
  SUBCASE("a variable that is set") {
    REQUIRE(::setenv("WK_ENV_SUBST_TEST", "value", 1) == 0);
    CHECK(env("WK_ENV_SUBST_TEST") == std::optional<std::string>("value"));
    ::unsetenv("WK_ENV_SUBST_TEST");
  }
  SUBCASE("a variable that is not set") {
    ::unsetenv("WK_ENV_SUBST_TEST_UNSET");
    CHECK_FALSE(env("WK_ENV_SUBST_TEST_UNSET").has_value());
  }
}
