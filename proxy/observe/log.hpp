#pragma once
// Diagnostic log on stderr: one line per event, "LEVEL message". Not on the data path: the
// access log (observe/access_log.hpp) is what records requests.

#include <atomic>
#include <exception>
#include <string_view>

namespace wk::observe {

enum class level { debug, info, warn, error };

namespace detail {
inline std::atomic<level> min_level{level::info};
}

// The least severe level written (config `log_level`; info until set). Any thread; set by the
// main thread at start and on reload.
inline void set_level(level lv) {
  detail::min_level.store(lv, std::memory_order_relaxed);
}

// Whether a message at `lv` is written: one relaxed load. Check it before building an
// expensive debug message.
inline bool enabled(level lv) {
  return lv >= detail::min_level.load(std::memory_order_relaxed);
}

// Thread-safe; writes the whole line with one write(2). Dropped below the level.
void log(level lv, std::string_view message);

inline void debug(std::string_view m) {
  log(level::debug, m);
}
inline void info(std::string_view m) {
  log(level::info, m);
}
inline void warn(std::string_view m) {
  log(level::warn, m);
}
inline void error(std::string_view m) {
  log(level::error, m);
}

// For events a remote peer can trigger at will (failed TLS handshakes, refused PROXY headers):
// at most 10 lines per second for the whole process; the next line that gets through says how
// many were dropped. The counters (observe/counters.hpp) still count every event.
void warn_limited(std::string_view m);

// Completion handler for co_spawn: a coroutine that ended with an exception is logged (it is
// a bug: expected failures are values), never silently dropped.
struct log_exception {
  std::string_view what;
  void operator()(const std::exception_ptr& e) const;
};

}  // namespace wk::observe
