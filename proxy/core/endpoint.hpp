#pragma once
// An address and port as text, the one way the logs and errors print them: "192.0.2.1:443",
// "[2001:db8::1]:443" (brackets for IPv6, RFC 3986 section 3.2.2).

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wk::core {

// An address alone, without brackets: "192.0.2.1", "2001:db8::1". IPv4 is written without
// inet_ntop's printf machinery (measured as a new connection's largest cost in user space).
std::string address_text(const boost::asio::ip::address& address);

std::string endpoint_text(const boost::asio::ip::address& address, std::uint16_t port);
std::string endpoint_text(const boost::asio::ip::tcp::endpoint& endpoint);

// A host name or IP literal as it goes before ":port": an IPv6 literal (it has a ':') in
// brackets, anything else unchanged.
std::string host_text(std::string_view host);

// host_text(host) + ":" + port.
std::string host_port_text(std::string_view host, std::uint16_t port);

// A port number as written in a URL or a HOST:PORT argument: one to five ASCII digits, at most
// 65535 (0 is returned; callers that need a real port refuse it). No sign, no spaces.
std::optional<std::uint16_t> parse_port(std::string_view text);

}  // namespace wk::core
