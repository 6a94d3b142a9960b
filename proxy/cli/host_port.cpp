#include "cli/host_port.hpp"

#include <boost/asio/ip/address_v6.hpp>

#include <algorithm>
#include <charconv>
#include <optional>

namespace wk::cli {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string bracketed(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

std::optional<std::uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

}  // namespace

std::string host_port::text() const {
  return bracketed(host) + ":" + std::to_string(port);
}

std::variant<host_port, std::string> parse_host_port(std::string_view text) {
  host_port out;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return R"(expected "[IPv6]:PORT", got ")" + std::string(text) + "\"";
    }
    out.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
    boost::system::error_code ec;
    const auto a = boost::asio::ip::make_address_v6(out.host, ec);
    if (ec) {
      return "invalid IPv6 address \"" + out.host + "\"";
    }
    out.host = a.to_string();
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return "expected HOST:PORT, got \"" + std::string(text) + "\"";
    }
    out.host = lower(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (out.host.find(':') != std::string::npos) {
      return std::string("an IPv6 address must be in brackets, e.g. [::1]:8080");
    }
  }
  const auto port = parse_port(port_text);
  if (!port || *port == 0) {
    return "invalid port \"" + std::string(port_text) + "\" (expected 1-65535)";
  }
  out.port = *port;
  return out;
}

}  // namespace wk::cli
