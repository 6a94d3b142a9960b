#include "core/endpoint.hpp"

namespace wk::core {

std::string endpoint_text(const boost::asio::ip::address& address, std::uint16_t port) {
  const std::string host = address.to_string();
  return (address.is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string endpoint_text(const boost::asio::ip::tcp::endpoint& endpoint) {
  return endpoint_text(endpoint.address(), endpoint.port());
}

}  // namespace wk::core
