// The config loader on arbitrary text: it never crashes or throws, and it either returns a
// config or at least one error, each naming the file and a position.

#include "config/load.hpp"
#include "fuzz_check.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // A fixed environment: ${HOME_PORT} is set, everything else is unset.
  const wk::config::env_lookup env = [](std::string_view name) -> std::optional<std::string> {
    if (name == "HOME_PORT") {
      return "8081";
    }
    return std::nullopt;
  };
  const auto result = wk::config::load_string(text, "fuzz.yaml", env);
  FUZZ_CHECK(result.cfg.has_value() == result.errors.empty());
  for (const auto& e : result.errors) {
    FUZZ_CHECK(e.file == "fuzz.yaml");
    FUZZ_CHECK(e.line >= 0 && e.column >= 0);
    FUZZ_CHECK(!e.reason.empty());
    FUZZ_CHECK(e.to_string().starts_with("fuzz.yaml"));
  }
  if (result.cfg) {
    FUZZ_CHECK(!result.cfg->listen.empty());
    FUZZ_CHECK(result.cfg->limits.target_bytes <= result.cfg->limits.header_bytes);
  }
  return 0;
}
