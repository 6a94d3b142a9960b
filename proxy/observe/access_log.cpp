#include "observe/access_log.hpp"

#include "core/time_text.hpp"

#include <cstdio>
#include <ctime>

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

// nginx's access-log escaping (ngx_http_log_escape): '"', '\' and bytes outside printable
// ASCII become \xHH, so a quoted field never ends early and a line never breaks. Empty: "-".
void append_combined_text(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  if (s.empty()) {
    out += '-';
    return;
  }
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\' || u < 0x20 || u >= 0x7f) {
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 0x0f];
    } else {
      out += c;
    }
  }
}

// The address part of "ip:port" or "[ipv6]:port" (combined logs carry no client port).
std::string_view client_ip(std::string_view peer) {
  if (peer.starts_with('[')) {
    if (const auto end = peer.find(']'); end != std::string_view::npos) {
      return peer.substr(1, end - 1);
    }
    return peer;
  }
  const auto colon = peer.rfind(':');
  if (colon != std::string_view::npos && peer.find(':') == colon) {
    return peer.substr(0, colon);
  }
  return peer;
}

}  // namespace

void format_json(const access_record& r, std::string& out) {
  out += "{\"time\":\"";
  core::append_iso8601_millis(out, r.time);
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
  append_field(out, "early_answer", r.early_answer);
  append_field(out, "referer", r.referer);
  append_field(out, "user_agent", r.user_agent);
  out += "}\n";
}

void format_combined(const access_record& r, std::string& out) {
  // Month names by hand: strftime's %b follows the locale, the format wants English.
  static constexpr std::string_view months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const auto t = std::chrono::system_clock::to_time_t(
      std::chrono::time_point_cast<std::chrono::seconds>(r.time));
  std::tm tm{};
  gmtime_r(&t, &tm);
  const auto month = static_cast<std::size_t>(tm.tm_mon) % std::size(months);
  char stamp[48];
  std::snprintf(stamp, sizeof stamp, " - - [%02d/%.3s/%04d:%02d:%02d:%02d +0000] \"", tm.tm_mday,
                months[month].data(), tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  append_combined_text(out, client_ip(r.client));
  out += stamp;
  if (r.method.empty()) {
    out += "- - -";
  } else {
    append_combined_text(out, r.method);
    out += ' ';
    append_combined_text(out, r.target);
    out += ' ';
    if (r.version == 0) {
      out += '-';
    } else {
      out += "HTTP/";
      out += std::to_string(r.version / 10);
      out += '.';
      out += std::to_string(r.version % 10);
    }
  }
  out += "\" ";
  out += std::to_string(r.status);
  out += ' ';
  if (r.bytes_out == 0) {
    out += '-';
  } else {
    out += std::to_string(r.bytes_out);
  }
  out += " \"";
  append_combined_text(out, r.referer);
  out += "\" \"";
  append_combined_text(out, r.user_agent);
  out += "\"\n";
}

void access_log::set_destination(std::shared_ptr<const log_file> file, config::log_format format) {
  flush();
  file_ = std::move(file);
  format_ = format;
}

void access_log::write(const access_record& r) {
  if (!file_) {
    return;
  }
  if (format_ == config::log_format::combined) {
    format_combined(r, buffer_);
  } else {
    format_json(r, buffer_);
  }
  if (buffer_.size() >= 32 * 1024) {
    flush();
  }
}

void access_log::flush() {
  if (buffer_.empty()) {
    return;
  }
  if (file_) {
    (void)file_->write_all(buffer_);  // on failure the lines are dropped (see log_file)
  }
  buffer_.clear();
}

}  // namespace wk::observe
