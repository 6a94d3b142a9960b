#include "config/config.hpp"

#include <algorithm>

namespace wk::config {

std::string upstream::key() const {
  std::string out = tls ? "https://" : "http://";
  if (host.find(':') != std::string::npos) {
    out += '[' + host + ']';  // IPv6 literal
  } else {
    out += host;
  }
  out += ':' + std::to_string(port);
  if (send_proxy_protocol != proxy_protocol::off) {
    out += send_proxy_protocol == proxy_protocol::v1 ? "|pp=1" : "|pp=2";
  }
  if (tls) {
    // Everything that changes the TLS handshake or its verification is part of the identity.
    out += "|sni=" + sni;
    out += verify ? "|verify=1" : "|verify=0";
    out += "|ca=" + ca_file;
  }
  return out;
}

}  // namespace wk::config

namespace wk::config {

bool cidr::contains(const std::uint8_t* address, std::size_t size) const {
  // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 client it stands for.
  static constexpr std::array<std::uint8_t, 12> mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (size == 16 && std::equal(mapped.begin(), mapped.end(), address)) {
    address += 12;
    size = 4;
  }
  if ((size == 16) != v6 || (size != 4 && size != 16)) {
    return false;
  }
  unsigned bits = prefix;
  for (std::size_t i = 0; bits > 0; ++i) {
    const unsigned take = bits >= 8 ? 8 : bits;
    const auto mask = static_cast<std::uint8_t>(0xff00U >> take);
    if ((address[i] & mask) != (bytes[i] & mask)) {
      return false;
    }
    bits -= take;
  }
  return true;
}

}  // namespace wk::config

namespace wk::config {

std::string_view name_of(listener_mode m) {
  switch (m) {
  case listener_mode::http:
    return "http";
  case listener_mode::tls:
    return "tls";
  case listener_mode::passthrough:
    return "passthrough";
  }
  return "http";
}

std::string_view name_of(io_engine e) {
  switch (e) {
  case io_engine::automatic:
    return "auto";
  case io_engine::io_uring:
    return "io_uring";
  case io_engine::epoll:
    return "epoll";
  }
  return "auto";
}

std::optional<io_engine> io_engine_named(std::string_view text) {
  for (const auto e : {io_engine::automatic, io_engine::io_uring, io_engine::epoll}) {
    if (name_of(e) == text) {
      return e;
    }
  }
  return std::nullopt;
}

}  // namespace wk::config
