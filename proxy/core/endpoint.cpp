#include "core/endpoint.hpp"

#include "core/ascii.hpp"

#include <charconv>

namespace wk::core {

std::string address_text(const boost::asio::ip::address& address) {
  if (!address.is_v4()) {
    return address.to_string();
  }
  std::string out;
  out.reserve(15);
  for (const unsigned char byte : address.to_v4().to_bytes()) {
    if (!out.empty()) {
      out.push_back('.');
    }
    if (byte >= 100) {
      out.push_back(static_cast<char>('0' + byte / 100));
    }
    if (byte >= 10) {
      out.push_back(static_cast<char>('0' + byte / 10 % 10));
    }
    out.push_back(static_cast<char>('0' + byte % 10));
  }
  return out;
}

std::string endpoint_text(const boost::asio::ip::address& address, std::uint16_t port) {
  return host_port_text(address_text(address), port);
}

std::string endpoint_text(const boost::asio::ip::tcp::endpoint& endpoint) {
  return endpoint_text(endpoint.address(), endpoint.port());
}

std::string host_text(std::string_view host) {
  return host.find(':') != std::string_view::npos ? "[" + std::string(host) + "]"
                                                  : std::string(host);
}

std::string host_port_text(std::string_view host, std::uint16_t port) {
  char digits[8];
  char* end = std::to_chars(digits, digits + sizeof digits, port).ptr;
  const bool v6 = host.find(':') != std::string_view::npos;
  std::string out;
  out.reserve(host.size() + 9);
  if (v6) {
    out.push_back('[');
  }
  out.append(host);
  if (v6) {
    out.push_back(']');
  }
  out.push_back(':');
  out.append(digits, end);
  return out;
}

std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5) {
    return std::nullopt;
  }
  unsigned value = 0;
  for (const char c : text) {
    if (!is_digit(c)) {
      return std::nullopt;
    }
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

}  // namespace wk::core
