#pragma once
// Listening sockets. The main thread opens, binds and listens once; each worker accepts on its
// own descriptor (a dup of the same socket), so no connection is handed between threads and
// the socket can later be passed to another process as is.

#include "config/config.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>

namespace wk::net {

// Shared by the workers accepting on one listener: connection count against the limit.
struct listener_slot {
  std::string name;  // the bound address, for logs
  // The bound address: a connection's own local address unless it is a wildcard.
  boost::asio::ip::tcp::endpoint bound;
  // Which config entry this is: its address as written, and how many earlier entries have the
  // same text (several "127.0.0.1:0" listeners may differ in mode). The runtime snapshot looks
  // the listener's settings up by these, so a reload applies to kept listeners too.
  std::string address;
  std::size_t ordinal = 0;
  std::size_t metrics_index = 0;  // label of this listener in metrics (by bound address)
  std::size_t max_connections = 0;
  std::atomic<std::size_t> active{0};
};

struct listener_socket {
  config::listener cfg;
  boost::asio::ip::tcp::endpoint bound;     // with the real port when the config said 0
  boost::asio::ip::tcp::acceptor acceptor;  // owns the listening descriptor
  std::shared_ptr<listener_slot> slot;

  explicit listener_socket(boost::asio::io_context& ioc) : acceptor(ioc) {}
};

// Pacing of one accept loop after accept() fails. The usual failures (EMFILE, ENFILE: out of
// descriptors; ENOBUFS, ENOMEM) leave the connection queued and the listener readable, so
// accepting again at once would spin on the same error at full CPU until something frees a
// descriptor. The loop waits instead, 10 ms after the first failure, doubling up to 1 s, and
// is back to full speed at the first success. An episode is the run of failures between two
// successes: the loop logs its start and its end, not every failure.
class accept_backoff {
public:
  static constexpr std::chrono::milliseconds shortest{10};
  static constexpr std::chrono::milliseconds longest{1'000};

  // An accept failed: how long to wait before the next one.
  std::chrono::milliseconds failed();
  // An accept succeeded: the number of failures of the episode this ends, 0 when none.
  std::uint64_t succeeded();
  // True between the first failure and the next success.
  [[nodiscard]] bool in_episode() const { return failures_ != 0; }

private:
  std::chrono::milliseconds next_ = shortest;
  std::uint64_t failures_ = 0;
};

// Takes one connection from the listen queue of `acceptor` (which must be non-blocking) with
// accept4(2): the socket is born non-blocking and close-on-exec, and inherits TCP_NODELAY from
// a listener opened or adopted here. Asio is told what is known about it, so serving it costs
// no ioctl(FIONBIO) at its first operation and no epoll_ctl(DEL) when it closes (Asio does both
// for a descriptor it did not open, in case another process shares it; nothing does here: a
// connection handed to another process leaves Asio by release() first). On failure `ec` holds
// accept4's errno (would_block: the queue is empty) and the socket is closed.
boost::asio::ip::tcp::socket accept_connection(boost::asio::ip::tcp::acceptor& acceptor,
                                               const boost::asio::any_io_executor& ex,
                                               boost::asio::ip::tcp::endpoint& peer,
                                               boost::system::error_code& ec);

// Opens, binds and listens (SO_REUSEADDR, TCP_NODELAY for the connections it accepts, backlog
// 4096). Returns the reason on failure, e.g. "127.0.0.1:80: bind: Permission denied".
std::variant<std::unique_ptr<listener_socket>, std::string>
open_listener(boost::asio::io_context& ioc, const config::listener& l, std::size_t max_connections);

// Takes over a descriptor that is already bound and listening (inherited from the wkproxy being
// upgraded, or from systemd socket activation): no bind, so no connection waiting in its accept
// queue is lost. Returns the reason when `fd` is not a listening TCP socket for `l`.
std::variant<std::unique_ptr<listener_socket>, std::string>
adopt_listener(boost::asio::io_context& ioc, const config::listener& l, int fd,
               std::size_t max_connections);

// The local address of `fd` when it is a listening TCP socket (IPv4 or IPv6); nullopt for
// anything else: another kind of socket, a file, a pipe, a descriptor that is not open.
std::optional<boost::asio::ip::tcp::endpoint> listening_endpoint(int fd);

// True when `ep` is `l`'s address, and its port unless the configured port is 0 (any port).
bool matches(const boost::asio::ip::tcp::endpoint& ep, const config::listener& l);

// True when `fd` is a listening TCP socket bound to `l`'s address (and port, unless 0).
bool listens_on(int fd, const config::listener& l);

}  // namespace wk::net
