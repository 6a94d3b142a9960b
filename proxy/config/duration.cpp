#include "config/duration.hpp"

#include <cstdint>
#include <limits>

namespace wk::config {

namespace {

// Reads a run of decimal digits as an unsigned value. std::nullopt when `text` is empty, holds a
// non-digit, or the value does not fit in 64 bits.
std::optional<std::uint64_t> parse_digits(std::string_view text) {
  if (text.empty()) {
    return std::nullopt;
  }
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
      return std::nullopt;
    }
    value = value * 10 + digit;
  }
  return value;
}

// Splits "12.5ms" into the number "12.5" and the unit "ms".
std::size_t number_length(std::string_view text) {
  std::size_t n = 0;
  while (n < text.size() && ((text[n] >= '0' && text[n] <= '9') || text[n] == '.')) {
    ++n;
  }
  return n;
}

}  // namespace

std::optional<duration> parse_duration(std::string_view text) {
  const std::size_t n = number_length(text);
  const std::string_view number = text.substr(0, n);
  const std::string_view unit = text.substr(n);

  std::uint64_t unit_ms = 0;
  if (unit.empty() || unit == "s") {
    unit_ms = 1'000;
  } else if (unit == "ms") {
    unit_ms = 1;
  } else if (unit == "m") {
    unit_ms = 60'000;
  } else if (unit == "h") {
    unit_ms = 3'600'000;
  } else {
    return std::nullopt;
  }

  // "1.5": an integer part, optionally a '.' and at least one more digit. Fraction digits beyond
  // the ninth cannot matter at millisecond precision (even for hours), so they are checked and
  // then dropped; the result is truncated to whole milliseconds.
  const std::size_t dot = number.find('.');
  const auto whole = parse_digits(number.substr(0, dot));
  if (!whole) {
    return std::nullopt;
  }
  std::uint64_t fraction_ms = 0;
  if (dot != std::string_view::npos) {
    const std::string_view fraction = number.substr(dot + 1);
    if (!parse_digits(fraction)) {
      return std::nullopt;  // "5.", "1.2.3"
    }
    const std::string_view kept = fraction.substr(0, 9);
    std::uint64_t scale = 1;
    for (std::size_t i = 0; i < kept.size(); ++i) {
      scale *= 10;
    }
    fraction_ms = *parse_digits(kept) * unit_ms / scale;  // < 10^9 * 3.6e6: no overflow
  }

  constexpr auto max_ms = static_cast<std::uint64_t>(std::numeric_limits<duration::rep>::max());
  if (*whole > (max_ms - fraction_ms) / unit_ms) {
    return std::nullopt;
  }
  return duration{static_cast<duration::rep>(*whole * unit_ms + fraction_ms)};
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::size_t n = 0;
  while (n < text.size() && text[n] >= '0' && text[n] <= '9') {
    ++n;
  }
  const auto number = parse_digits(text.substr(0, n));
  if (!number) {
    return std::nullopt;
  }
  const std::string_view unit = text.substr(n);
  std::uint64_t multiplier = 0;
  if (unit.empty()) {
    multiplier = 1;
  } else if (unit == "k" || unit == "K" || unit == "KiB") {
    multiplier = std::uint64_t{1} << 10;
  } else if (unit == "m" || unit == "M" || unit == "MiB") {
    multiplier = std::uint64_t{1} << 20;
  } else if (unit == "g" || unit == "G" || unit == "GiB") {
    multiplier = std::uint64_t{1} << 30;
  } else {
    return std::nullopt;
  }
  if (*number > std::numeric_limits<std::uint64_t>::max() / multiplier) {
    return std::nullopt;
  }
  return *number * multiplier;
}

}  // namespace wk::config
