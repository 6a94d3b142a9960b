#include "net/listener.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/v6_only.hpp>

namespace wk::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

std::string endpoint_string(const tcp::endpoint& ep) {
  auto a = ep.address();
  auto host = a.to_string();
  return (a.is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(ep.port());
}

std::variant<std::unique_ptr<listener_socket>, std::string>
open_listener(asio::io_context& ioc, const config::listener& l, std::size_t max_connections) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(l.host, ec);
  if (ec) {
    return l.address + ": invalid address: " + ec.message();
  }
  auto ls = std::make_unique<listener_socket>(ioc);
  ls->cfg = l;
  tcp::endpoint ep(addr, l.port);
  auto& a = ls->acceptor;
  if (a.open(ep.protocol(), ec); ec) {
    return l.address + ": socket: " + ec.message();
  }
  a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (addr.is_v6()) {
    a.set_option(asio::ip::v6_only(true), ec);
  }
  if (a.bind(ep, ec); ec) {
    return l.address + ": bind: " + ec.message();
  }
  if (a.listen(4096, ec); ec) {
    return l.address + ": listen: " + ec.message();
  }
  ls->bound = a.local_endpoint(ec);
  ls->slot = std::make_shared<listener_slot>();
  ls->slot->name = endpoint_string(ls->bound);
  ls->slot->max_connections = max_connections;
  return ls;
}

}  // namespace wk::net
