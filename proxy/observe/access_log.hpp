#pragma once
// The access log: one line per request (or passthrough connection), as JSON or in the
// Apache/nginx combined format. Each worker owns one access_log and appends to its buffer (no
// locks); the buffer, always whole lines, is written with write(2) when it passes a threshold,
// on flush() (a periodic timer of the worker), before the destination changes, and on
// destruction.

#include "config/config.hpp"
#include "observe/log_file.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace wk::observe {

// Views into the request and the connection; valid for the call that logs them.
struct access_record {
  std::chrono::system_clock::time_point time;
  std::string_view client;      // "ip:port" or "[ipv6]:port"
  std::string_view host;        // normalized host, "" when none
  std::string_view method;      // "" when no request head was parsed (and for passthrough)
  std::string_view target;      // as sent
  unsigned version = 0;         // the request's HTTP version, 10 or 11; 0 when none was parsed
  std::string_view route;       // "origin" | "validation" | "reject" | "passthrough"
  std::string_view upstream;    // "origin" | "cloudfront" | ""
  unsigned status = 0;          // 0: no response was sent
  std::uint64_t bytes_in = 0;   // request body bytes read from the client
  std::uint64_t bytes_out = 0;  // response body bytes written to the client
  double duration_ms = 0;
  std::string_view error;         // failure name, "" when none
  std::string_view early_answer;  // "drained" | "closed" when the backend answered before it had
                                  // the whole request body; "" otherwise
  std::string_view referer;       // the Referer field as sent, "" when none
  std::string_view user_agent;    // the User-Agent field as sent, "" when none
};

// Appends `r` as one JSON line (strings escaped) to `out`.
void format_json(const access_record& r, std::string& out);

// Appends `r` as one line of the combined format to `out`:
//   CLIENT_IP - - [28/Nov/2026:17:42:31 +0000] "METHOD TARGET HTTP/1.1" STATUS BYTES "REFERER" "UA"
// Time in UTC; BYTES is the response body, "-" when 0 (Apache's %b); STATUS is the logged one
// (0: no response was sent). A record without a method (a request whose head could not be
// parsed, a passthrough connection) has the request field "- - -". In quoted fields, '"', '\'
// and bytes outside printable ASCII are written as \xHH, and an empty field as "-", as nginx
// does, so that a line always splits into the same fields.
void format_combined(const access_record& r, std::string& out);

class access_log {
public:
  access_log() = default;  // writes nothing until set_destination
  access_log(const access_log&) = delete;
  access_log& operator=(const access_log&) = delete;
  ~access_log() { flush(); }

  // Where lines go from now on (nullptr: access_log off) and how they are written. Lines
  // already buffered are first written to the previous file, in the format they were made in.
  void set_destination(std::shared_ptr<const log_file> file, config::log_format format);

  void write(const access_record& r);
  void flush();

private:
  std::shared_ptr<const log_file> file_;
  config::log_format format_ = config::log_format::json;
  std::string buffer_;
};

}  // namespace wk::observe
