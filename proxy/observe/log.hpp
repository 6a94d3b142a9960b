#pragma once
// Diagnostic log on stderr: one line per event, "LEVEL message". Not on the data path: the
// access log (observe/access_log.hpp) is what records requests.

#include <exception>
#include <string_view>

namespace wk::observe {

enum class level { debug, info, warn, error };

// Thread-safe; writes the whole line with one write(2).
void log(level lv, std::string_view message);

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
