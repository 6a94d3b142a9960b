#pragma once
// An address and port as text, the one way the logs and errors print them: "192.0.2.1:443",
// "[2001:db8::1]:443" (brackets for IPv6, RFC 3986 section 3.2.2).

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <string>

namespace wk::core {

std::string endpoint_text(const boost::asio::ip::address& address, std::uint16_t port);
std::string endpoint_text(const boost::asio::ip::tcp::endpoint& endpoint);

}  // namespace wk::core
