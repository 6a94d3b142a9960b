#include "cli/host_port.hpp"

#include "core/ascii.hpp"
#include "core/endpoint.hpp"

#include <boost/asio/ip/address_v6.hpp>

#include <optional>

namespace wk::cli {

std::string host_port::text() const {
  return core::host_port_text(host, port);
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
    out.host = core::to_lower(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (out.host.find(':') != std::string::npos) {
      return std::string("an IPv6 address must be in brackets, e.g. [::1]:8080");
    }
  }
  const auto port = core::parse_port(port_text);
  if (!port || *port == 0) {
    return "invalid port \"" + std::string(port_text) + "\" (expected 1-65535)";
  }
  out.port = *port;
  return out;
}

}  // namespace wk::cli
