#include "core/host_pattern.hpp"

#include <doctest/doctest.h>

#include <string_view>

namespace core = wk::core;

TEST_CASE("a one-label wildcard matches exactly one more label") {
  CHECK(core::wildcard_matches("*.example.com", "a.example.com"));
  CHECK(core::wildcard_matches("*.example.com", "xn--bcher-kva.example.com"));
  CHECK_FALSE(core::wildcard_matches("*.example.com", "example.com"));
  CHECK_FALSE(core::wildcard_matches("*.example.com", "a.b.example.com"));
  CHECK_FALSE(core::wildcard_matches("*.example.com", ".example.com"));  // empty label
  CHECK_FALSE(core::wildcard_matches("*.example.com", "aexample.com"));
  CHECK_FALSE(core::wildcard_matches("*.example.com", "a.example.com.evil"));
  CHECK_FALSE(core::wildcard_matches("*.example.com", ""));
  // Not a wildcard pattern: never matches through this rule.
  CHECK_FALSE(core::wildcard_matches("example.com", "example.com"));
  CHECK_FALSE(core::wildcard_matches("*", "a.example.com"));
  CHECK_FALSE(core::wildcard_matches("a.*.com", "a.b.com"));
}

TEST_CASE("the wildcard rule compares bytes; callers lower-case first") {
  CHECK_FALSE(core::wildcard_matches("*.example.com", "a.EXAMPLE.com"));
  CHECK_FALSE(core::wildcard_matches("*.EXAMPLE.com", "a.example.com"));
  // A trailing dot is part of the name here (callers strip it before matching).
  CHECK_FALSE(core::wildcard_matches("*.example.com", "a.example.com."));
  CHECK(core::wildcard_matches("*.example.com.", "a.example.com."));
}

TEST_CASE("the case-insensitive wildcard rule differs only in letter case") {
  CHECK(core::wildcard_matches_ignoring_case("*.Example.COM", "A.example.com"));
  CHECK(core::wildcard_matches_ignoring_case("*.example.com", "a.example.com"));
  CHECK_FALSE(core::wildcard_matches_ignoring_case("*.example.com", "example.com"));
  CHECK_FALSE(core::wildcard_matches_ignoring_case("*.example.com", "a.b.EXAMPLE.com"));
  CHECK_FALSE(core::wildcard_matches_ignoring_case("EXAMPLE.com", "example.com"));
}

TEST_CASE("a host pattern is \"*\", an exact name, or a one-label wildcard") {
  CHECK(core::host_pattern_matches("*", "anything.example"));
  CHECK(core::host_pattern_matches("*", ""));
  CHECK(core::host_pattern_matches("example.com", "example.com"));
  CHECK_FALSE(core::host_pattern_matches("example.com", "a.example.com"));
  CHECK(core::host_pattern_matches("*.example.com", "a.example.com"));
  CHECK_FALSE(core::host_pattern_matches("*.example.com", "a.b.example.com"));
  CHECK_FALSE(core::host_pattern_matches("*.example.com", "example.com"));
}

TEST_CASE("wildcard_suffix is what a matching pattern holds after its star") {
  CHECK(core::wildcard_suffix("a.example.com") == ".example.com");
  CHECK(core::wildcard_suffix("a.b") == ".b");
  CHECK(core::wildcard_suffix("localhost").empty());
  CHECK(core::wildcard_suffix(".example.com").empty());
  CHECK(core::wildcard_suffix("").empty());
  CHECK(core::is_wildcard("*.a"));
  CHECK_FALSE(core::is_wildcard("*."));
  CHECK_FALSE(core::is_wildcard("*"));
  CHECK_FALSE(core::is_wildcard("a.*.b"));
}
