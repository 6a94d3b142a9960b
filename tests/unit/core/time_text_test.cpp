#include "core/time_text.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <string>

using namespace std::chrono_literals;
using std::chrono::system_clock;

namespace {

// 2024-05-01T14:03:07 UTC (1714572187 seconds after the epoch).
const system_clock::time_point may_first{1714572187s};

}  // namespace

TEST_CASE("ISO 8601 with milliseconds") {
  CHECK(wk::core::iso8601_millis(may_first + 123ms) == "2024-05-01T14:03:07.123Z");
  CHECK(wk::core::iso8601_millis(may_first + 7ms + 999us) == "2024-05-01T14:03:07.007Z");
  CHECK(wk::core::iso8601_millis(system_clock::time_point{}) == "1970-01-01T00:00:00.000Z");
  // The last millisecond of a leap day.
  CHECK(wk::core::iso8601_millis(system_clock::time_point{951868799s + 999ms}) ==
        "2000-02-29T23:59:59.999Z");
  std::string out = "{";
  wk::core::append_iso8601_millis(out, may_first);
  CHECK(out == "{2024-05-01T14:03:07.000Z");
}

TEST_CASE("ISO 8601 in whole seconds") {
  CHECK(wk::core::iso8601_seconds(may_first + 999ms) == "2024-05-01T14:03:07Z");
  CHECK(wk::core::iso8601_seconds(system_clock::time_point{7258118399s}) == "2199-12-31T23:59:59Z");
  std::string out = "x";
  wk::core::append_iso8601_seconds(out, may_first);
  CHECK(out == "x2024-05-01T14:03:07Z");
}
