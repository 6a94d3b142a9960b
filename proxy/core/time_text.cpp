#include "core/time_text.hpp"

#include <cstdio>

namespace wk::core {
namespace {

using std::chrono::system_clock;

// "YYYY-MM-DDTHH:MM:SS" of the whole second `t` falls in (rounded down).
void append_date_time(std::string& out, system_clock::time_point t) {
  const auto day = std::chrono::floor<std::chrono::days>(t);
  const std::chrono::year_month_day date{day};
  const std::chrono::hh_mm_ss time{std::chrono::floor<std::chrono::seconds>(t - day)};
  char text[40];
  const int n = std::snprintf(
      text, sizeof text, "%04d-%02u-%02uT%02d:%02d:%02d", static_cast<int>(date.year()),
      static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
      static_cast<int>(time.hours().count()), static_cast<int>(time.minutes().count()),
      static_cast<int>(time.seconds().count()));
  out.append(text, static_cast<std::size_t>(n));
}

}  // namespace

void append_iso8601_millis(std::string& out, system_clock::time_point t) {
  append_date_time(out, t);
  const auto secs = std::chrono::floor<std::chrono::seconds>(t);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(t - secs).count();
  char frac[8];
  const int n = std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(millis));
  out.append(frac, static_cast<std::size_t>(n));
}

std::string iso8601_millis(system_clock::time_point t) {
  std::string out;
  append_iso8601_millis(out, t);
  return out;
}

void append_iso8601_seconds(std::string& out, system_clock::time_point t) {
  append_date_time(out, t);
  out += 'Z';
}

std::string iso8601_seconds(system_clock::time_point t) {
  std::string out;
  append_iso8601_seconds(out, t);
  return out;
}

}  // namespace wk::core
