#include "net/listener.hpp"

#include "core/endpoint.hpp"

#include <algorithm>
#include <cstring>
#include <optional>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/v6_only.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace wk::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// An Asio socket whose state flags can be set to what accept4() already made true. Asio keeps
// them in the socket's implementation (protected in basic_socket); the flags and their meaning
// are those of the epoll reactor of Boost 1.74 to 1.81 at least (detail::socket_ops).
class accepted_socket : public tcp::socket {
public:
  using tcp::socket::basic_stream_socket;
  void known_fresh() {
    namespace ops = asio::detail::socket_ops;
    auto& state = impl_.get_implementation().state_;
    state |= ops::internal_non_blocking;  // SOCK_NONBLOCK: no ioctl at the first operation
    state &= ~ops::possible_dup;          // ours alone: close() needs no epoll_ctl(DEL)
  }
};

}  // namespace

tcp::socket accept_connection(tcp::acceptor& acceptor, const asio::any_io_executor& ex,
                              tcp::endpoint& peer, boost::system::error_code& ec) {
  accepted_socket s(ex);
  auto length = static_cast<socklen_t>(peer.capacity());
  const int fd =
      ::accept4(acceptor.native_handle(), peer.data(), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    ec.assign(errno, boost::system::system_category());
    return s;
  }
  peer.resize(length);
  s.assign(peer.protocol(), fd, ec);
  if (ec) {
    ::close(fd);
    return s;
  }
  s.known_fresh();
  return s;
}

std::chrono::milliseconds accept_backoff::failed() {
  ++failures_;
  const auto delay = next_;
  next_ = std::min(next_ * 2, longest);
  return delay;
}

std::uint64_t accept_backoff::succeeded() {
  const auto n = failures_;
  failures_ = 0;
  next_ = shortest;
  return n;
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
  a.set_option(tcp::no_delay(true), ec);  // inherited by every accepted connection (Linux)
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
  ls->slot->name = core::endpoint_text(ls->bound);
  ls->slot->bound = ls->bound;
  ls->slot->address = l.address;
  ls->slot->max_connections = max_connections;
  return ls;
}

std::optional<tcp::endpoint> listening_endpoint(int fd) {
  int type = 0;
  int listening = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
    return std::nullopt;
  }
  // SOCK_STREAM alone would also let an SCTP socket through.
  int protocol = 0;
  len = sizeof protocol;
  if (::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) != 0 || protocol != IPPROTO_TCP) {
    return std::nullopt;
  }
  len = sizeof listening;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || listening == 0) {
    return std::nullopt;
  }
  sockaddr_storage ss{};
  len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return std::nullopt;
  }
  tcp::endpoint ep;
  if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
    std::memcpy(ep.data(), &ss, std::min<std::size_t>(len, sizeof(sockaddr_storage)));
    ep.resize(len);
    return ep;
  }
  return std::nullopt;
}

bool matches(const tcp::endpoint& ep, const config::listener& l) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(l.host, ec);
  return !ec && ep.address() == addr && (l.port == 0 || ep.port() == l.port);
}

bool listens_on(int fd, const config::listener& l) {
  auto ep = listening_endpoint(fd);
  return ep && matches(*ep, l);
}

std::variant<std::unique_ptr<listener_socket>, std::string>
adopt_listener(asio::io_context& ioc, const config::listener& l, int fd,
               std::size_t max_connections) {
  auto ep = listening_endpoint(fd);
  if (!ep) {
    return l.address + ": inherited descriptor " + std::to_string(fd) +
           " is not a listening TCP socket";
  }
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);  // inherited without it; our own children get it explicitly
  auto ls = std::make_unique<listener_socket>(ioc);
  ls->cfg = l;
  boost::system::error_code ec;
  ls->acceptor.assign(ep->protocol(), fd, ec);
  if (ec) {
    return l.address + ": " + ec.message();
  }
  ls->acceptor.set_option(tcp::no_delay(true), ec);  // as open_listener: accepted ones inherit it
  ls->bound = *ep;
  ls->slot = std::make_shared<listener_slot>();
  ls->slot->name = core::endpoint_text(ls->bound);
  ls->slot->bound = ls->bound;
  ls->slot->address = l.address;
  ls->slot->max_connections = max_connections;
  return ls;
}

}  // namespace wk::net
