#pragma once
// The connected loopback pair the timed_stream and ring tests share: `first` wrapped in a
// timed_stream, `second` a plain socket (the peer).

#include "net/timed_stream.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <utility>

namespace wk::net::test {

inline std::pair<timed_stream, boost::asio::ip::tcp::socket>
connected_pair(boost::asio::io_context& ioc) {
  using tcp = boost::asio::ip::tcp;
  tcp::acceptor acc(ioc, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(ioc);
  client.connect(acc.local_endpoint());
  tcp::socket server = acc.accept();
  return {timed_stream(std::move(client)), std::move(server)};
}

}  // namespace wk::net::test
