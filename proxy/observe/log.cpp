#include "observe/log.hpp"

#include "core/time_text.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <unistd.h>

namespace wk::observe {

void log(level lv, std::string_view message) {
  if (!enabled(lv)) {
    return;
  }
  static constexpr std::string_view names[] = {"debug", "info", "warn", "error"};
  std::string line;
  line.reserve(message.size() + 48);
  core::append_iso8601_seconds(line, std::chrono::system_clock::now());
  line += ' ';
  line += names[static_cast<int>(lv)];
  line += ' ';
  line += message;
  line += '\n';
  // One write per line: lines from several threads never interleave.
  std::size_t off = 0;
  while (off < line.size()) {
    auto w = ::write(2, line.data() + off, line.size() - off);
    if (w <= 0) {
      break;
    }
    off += static_cast<std::size_t>(w);
  }
}

void warn_limited(std::string_view m) {
  static std::atomic<std::int64_t> window{0};  // current second
  static std::atomic<std::uint32_t> used{0};   // lines written in it
  static std::atomic<std::uint64_t> dropped{0};
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::steady_clock::now().time_since_epoch())
                       .count();
  auto seen = window.load(std::memory_order_relaxed);
  if (seen != now && window.compare_exchange_strong(seen, now, std::memory_order_relaxed)) {
    used.store(0, std::memory_order_relaxed);
  }
  if (used.fetch_add(1, std::memory_order_relaxed) >= 10) {
    dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const auto skipped = dropped.exchange(0, std::memory_order_relaxed);
  if (skipped == 0) {
    log(level::warn, m);
  } else {
    log(level::warn, std::string(m) + " (" + std::to_string(skipped) +
                         " similar messages dropped before this one)");
  }
}

void log_exception::operator()(const std::exception_ptr& e) const {
  if (!e) {
    return;
  }
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    log(level::error, std::string(what) + " aborted: " + ex.what());
  } catch (...) {
    log(level::error, std::string(what) + " aborted: unknown exception");
  }
}

}  // namespace wk::observe
