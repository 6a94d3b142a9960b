#include "observe/access_log.hpp"

#include <cstdio>
#include <ctime>
#include <unistd.h>

namespace wk::observe {

namespace {

void append_escaped(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u >= 0x7f) {
      // Non-ASCII bytes are escaped one by one: the log stays valid JSON whatever was sent.
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", u);
      out += esc;
    } else {
      out += c;
    }
  }
  out += '"';
}

void append_field(std::string& out, std::string_view key, std::string_view value) {
  out += ",\"";
  out += key;
  out += "\":";
  append_escaped(out, value);
}

void append_number(std::string& out, std::string_view key, std::uint64_t value) {
  out += ",\"";
  out += key;
  out += "\":";
  out += std::to_string(value);
}

}  // namespace

void format_json(const access_record& r, std::string& out) {
  auto secs = std::chrono::time_point_cast<std::chrono::seconds>(r.time);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(r.time - secs).count();
  auto t = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[40];
  auto n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(stamp + n, sizeof stamp - n, ".%03dZ", static_cast<int>(millis));
  out += "{\"time\":\"";
  out += stamp;
  out += '"';
  append_field(out, "client", r.client);
  append_field(out, "host", r.host);
  append_field(out, "method", r.method);
  append_field(out, "target", r.target);
  append_field(out, "route", r.route);
  append_field(out, "upstream", r.upstream);
  append_number(out, "status", r.status);
  append_number(out, "bytes_in", r.bytes_in);
  append_number(out, "bytes_out", r.bytes_out);
  char dur[32];
  std::snprintf(dur, sizeof dur, ",\"duration_ms\":%.3f", r.duration_ms);
  out += dur;
  append_field(out, "error", r.error);
  out += "}\n";
}

void access_log::write(const access_record& r) {
  if (output_ == config::log_output::off) {
    return;
  }
  format_json(r, buffer_);
  if (buffer_.size() >= 32 * 1024) {
    flush();
  }
}

void access_log::flush() {
  if (buffer_.empty()) {
    return;
  }
  int fd = output_ == config::log_output::stderr_stream ? 2 : 1;
  std::size_t off = 0;
  while (off < buffer_.size()) {
    auto w = ::write(fd, buffer_.data() + off, buffer_.size() - off);
    if (w <= 0) {
      break;  // a closed stdout must not take the proxy down; the lines are dropped
    }
    off += static_cast<std::size_t>(w);
  }
  buffer_.clear();
}

}  // namespace wk::observe
