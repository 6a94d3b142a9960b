#pragma once
// Durations in config: "250ms", "5s", "2m", "1h", or a bare number of seconds ("30", "1.5").

#include "config/config.hpp"

#include <optional>
#include <string_view>

namespace wk::config {

// std::nullopt for anything else, negative values, or values that overflow.
std::optional<duration> parse_duration(std::string_view text);

// Sizes: "512", "16k"/"16KiB", "8m"/"8MiB", "1g"/"1GiB" (powers of 1024). std::nullopt on error.
std::optional<std::uint64_t> parse_size(std::string_view text);

}  // namespace wk::config
