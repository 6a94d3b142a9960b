#include "config/duration.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <string_view>

namespace cfg = wk::config;

TEST_CASE("durations accept a number with an optional unit, seconds by default") {
  struct row {
    std::string_view text;
    std::int64_t ms;
  };
  const row rows[] = {
      {"250ms", 250},    {"5s", 5'000},
      {"2m", 120'000},   {"1h", 3'600'000},
      {"30", 30'000},    {"1.5", 1'500},
      {"0.25m", 15'000}, {"1.5h", 5'400'000},
      {"0", 0},          {"0ms", 0},
      {"0.0001s", 0},    {"1.0000009h", 3'600'003},
      {"007s", 7'000},   {"9223372036854775807ms", INT64_MAX},
  };
  for (const row& r : rows) {
    CAPTURE(r.text);
    const auto d = cfg::parse_duration(r.text);
    REQUIRE(d.has_value());
    CHECK(d->count() == r.ms);
  }
}

TEST_CASE("durations reject negatives, garbage and overflow") {
  for (std::string_view text : {"",
                                "-1s",
                                "+1s",
                                "s",
                                "ms",
                                "1d",
                                "5 s",
                                " 5s",
                                "5s ",
                                "1.",
                                ".5",
                                "1.2.3",
                                "5S",
                                "5sec",
                                "1e3",
                                "0x10",
                                "9223372036854775808ms",
                                "9223372036854776s",
                                "99999999999999999999",
                                "1h1m"}) {
    CAPTURE(text);
    CHECK_FALSE(cfg::parse_duration(text).has_value());
  }
}

TEST_CASE("sizes accept bytes and 1024-based units") {
  struct row {
    std::string_view text;
    std::uint64_t bytes;
  };
  const row rows[] = {
      {"0", 0},
      {"512", 512},
      {"16k", 16 * 1024},
      {"16K", 16 * 1024},
      {"16KiB", 16 * 1024},
      {"8m", 8ULL << 20},
      {"8M", 8ULL << 20},
      {"8MiB", 8ULL << 20},
      {"1g", 1ULL << 30},
      {"1G", 1ULL << 30},
      {"1GiB", 1ULL << 30},
      {"18446744073709551615", UINT64_MAX},
      {"17179869183G", 17179869183ULL << 30},
  };
  for (const row& r : rows) {
    CAPTURE(r.text);
    const auto size = cfg::parse_size(r.text);
    REQUIRE(size.has_value());
    CHECK(*size == r.bytes);
  }
}

TEST_CASE("sizes reject negatives, fractions, unknown units and overflow") {
  for (std::string_view text : {"", "-1", "+1", "1.5k", "k", "16kb", "16KB", "16 KiB", "16kib",
                                "1t", "1TiB", "18446744073709551616", "17179869184G", "0x10"}) {
    CAPTURE(text);
    CHECK_FALSE(cfg::parse_size(text).has_value());
  }
}
