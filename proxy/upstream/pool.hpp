#pragma once
// Per-worker pool of idle backend connections (keep-alive). Touched only by its worker's
// thread: no locks. Most recently used first, so the warmest connection is reused and the
// cold ones age out.

#include "upstream/connection.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace wk::upstream {

class pool {
public:
  explicit pool(std::size_t max_idle_per_key = 512) : max_idle_per_key_(max_idle_per_key) {}

  // An idle connection for `key` that is still open and clean, or null. Every connection is
  // checked on every take, however briefly it was idle: a byte that arrived while it sat in the
  // pool (the tail of an over-long body, a body after a HEAD or 304 answer, a response nobody
  // asked for) would otherwise be read as the next request's response, and that request may
  // be another client's. One non-blocking MSG_PEEK per reuse (about 0.3 us, measured in
  // bench/); connections found closed or with bytes waiting are dropped.
  std::unique_ptr<connection> take(const std::string& key);

  // Returns a connection after a complete exchange. Dropped when the key's list is full.
  void give(std::unique_ptr<connection> c);

  // Closes connections idle for longer than `max_idle`, and all connections whose key is not
  // in `keep` when `keep` is given (after a reload changed an upstream).
  void expire(std::chrono::steady_clock::duration max_idle);
  void retain_only(const std::vector<std::string>& keep);
  void clear() { idle_.clear(); }

  std::size_t idle_count() const;
  // Idle connections per key (keys may carry a "|client=" suffix, see session/exchange.hpp).
  template <class F> void for_each_key(F&& f) const {
    for (const auto& [key, list] : idle_) {
      f(key, list.size());
    }
  }

private:
  std::size_t max_idle_per_key_;
  std::unordered_map<std::string, std::vector<std::unique_ptr<connection>>> idle_;
};

}  // namespace wk::upstream
