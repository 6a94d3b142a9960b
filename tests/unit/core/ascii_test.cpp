#include "core/ascii.hpp"

#include <doctest/doctest.h>

#include <clocale>
#include <string>

namespace core = wk::core;

TEST_CASE("to_lower changes ASCII capitals only") {
  CHECK(core::to_lower('A') == 'a');
  CHECK(core::to_lower('Z') == 'z');
  CHECK(core::to_lower('a') == 'a');
  CHECK(core::to_lower('@') == '@');  // the byte before 'A'
  CHECK(core::to_lower('[') == '[');  // the byte after 'Z'
  CHECK(core::to_lower('\xC4') == '\xC4');
  CHECK(core::to_lower("Example.COM:8080") == "example.com:8080");
  CHECK(core::to_lower(std::string_view("")).empty());
  CHECK(core::to_upper('q') == 'Q');
  CHECK(core::to_upper('{') == '{');
}

TEST_CASE("to_lower ignores the C locale") {
  // Latin-1 0xC4 is a capital letter in many locales; a protocol byte must never change with
  // one. (std::setlocale may fail when the locale is not installed: the check holds either way.)
  const std::string before = std::setlocale(LC_CTYPE, nullptr);
  std::setlocale(LC_CTYPE, "de_DE.ISO-8859-1");
  CHECK(core::to_lower("\xC4X") == "\xC4x");
  std::setlocale(LC_CTYPE, before.c_str());
}

TEST_CASE("iequals compares ASCII letters case-insensitively and nothing else") {
  CHECK(core::iequals("Chunked", "chunked"));
  CHECK(core::iequals("", ""));
  CHECK_FALSE(core::iequals("chunked", "chunke"));
  CHECK_FALSE(core::iequals("@", "`"));  // 0x40 and 0x60 differ by the case bit
  CHECK_FALSE(core::iequals("\xC4", "\xE4"));
  static_assert(core::iequals("HTTP", "http"));
}

TEST_CASE("tchar and token follow RFC 9110 section 5.6.2") {
  for (const char c : std::string_view("!#$%&'*+-.^_`|~09azAZ")) {
    CAPTURE(c);
    CHECK(core::is_tchar(c));
  }
  for (const char c : std::string_view("\"(),/:;<=>?@[\\]{} \t\x7f\x80")) {
    CAPTURE(c);
    CHECK_FALSE(core::is_tchar(c));
  }
  CHECK_FALSE(core::is_tchar('\0'));
  CHECK(core::is_token("GET"));
  CHECK(core::is_token("X-Custom_1.0"));
  CHECK_FALSE(core::is_token(""));
  CHECK_FALSE(core::is_token("GET "));
  CHECK_FALSE(core::is_token("a:b"));
}

TEST_CASE("white space is SP, HTAB, CR and LF; trim removes it at both ends only") {
  for (const char c : std::string_view(" \t\r\n")) {
    CAPTURE(c);
    CHECK(core::is_space(c));
  }
  for (const char c : std::string_view("a\v\f\x85\xa0-")) {
    CAPTURE(c);
    CHECK_FALSE(core::is_space(c));
  }
  CHECK(core::trim("  a b \r\n") == "a b");
  CHECK(core::trim("\t\n") == "");
  CHECK(core::trim("") == "");
  CHECK(core::trim("x") == "x");
  static_assert(core::trim(" y ") == "y");
}
