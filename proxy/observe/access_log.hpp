#pragma once
// The access log: one JSON object per request. Each worker owns one access_log and appends to
// its buffer (no locks); the buffer is written with one write(2) when it passes a threshold,
// on flush() (a periodic timer of the worker), and on destruction.

#include "config/config.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace wk::observe {

struct access_record {
  std::chrono::system_clock::time_point time;
  std::string_view client;  // "ip:port"
  std::string_view host;    // normalized host, "" when none
  std::string_view method;
  std::string_view target;      // as sent
  std::string_view route;       // "origin" | "validation" | "reject"
  std::string_view upstream;    // "origin" | "cloudfront" | ""
  unsigned status = 0;          // 0: no response was sent
  std::uint64_t bytes_in = 0;   // request body bytes read from the client
  std::uint64_t bytes_out = 0;  // response body bytes written to the client
  double duration_ms = 0;
  std::string_view error;  // failure name, "" when none
};

// Appends `r` as one JSON line (strings escaped) to `out`.
void format_json(const access_record& r, std::string& out);

class access_log {
public:
  explicit access_log(config::log_output output) : output_(output) {}
  access_log(const access_log&) = delete;
  access_log& operator=(const access_log&) = delete;
  ~access_log() { flush(); }

  void set_output(config::log_output output) { output_ = output; }
  void write(const access_record& r);
  void flush();

private:
  config::log_output output_;
  std::string buffer_;
};

}  // namespace wk::observe
