#include "http/local_reply.hpp"

#include "wire/request_head.hpp"

#include <boost/beast/http/status.hpp>

namespace wk::http {

namespace bhttp = boost::beast::http;

std::string status_reply(unsigned status, std::string_view body, bool keep_alive, bool head) {
  std::string out;
  out.reserve(160 + body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += bhttp::obsolete_reason(bhttp::int_to_status(status));
  out += "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ";
  out += std::to_string(body.size());
  out += "\r\nCache-Control: no-store\r\n";
  out += keep_alive ? "" : "Connection: close\r\n";
  out += "\r\n";
  if (!head) {
    out += body;
  }
  return out;
}

std::string validation_reply(unsigned status, std::string_view location, std::string_view body,
                             bool keep_alive, bool head) {
  if (!wire::is_safe_field_value(location)) {
    return {};
  }
  std::string out;
  out.reserve(200 + location.size() + body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += bhttp::obsolete_reason(bhttp::int_to_status(status));
  out += "\r\nContent-Type: text/plain\r\nContent-Length: ";
  out += std::to_string(body.size());
  out += "\r\nCache-Control: no-store\r\n";
  if (!location.empty()) {
    out += "Location: ";
    out += location;
    out += "\r\n";
  }
  out += keep_alive ? "" : "Connection: close\r\n";
  out += "\r\n";
  if (!head) {
    out += body;
  }
  return out;
}

std::string error_reply(core::failure f, std::string_view detail, bool head) {
  std::string body = "wkproxy: ";
  body += core::describe(f);
  if (!detail.empty()) {
    body += ": ";
    for (char c : detail) {
      auto u = static_cast<unsigned char>(c);
      body += (u < 0x20 || u == 0x7f) ? ' ' : c;
    }
  }
  body += '\n';
  return status_reply(core::status_for(f), body, false, head);
}

}  // namespace wk::http
