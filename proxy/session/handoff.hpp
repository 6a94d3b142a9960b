#pragma once
// Handing client connections to the process that replaces this one (binary upgrade, SIGUSR2).
//
// The old process and its successor share a Unix SOCK_SEQPACKET socket pair, the successor's
// end inherited at exec. Once the successor serves, the old one sends it each plain-HTTP
// connection at a request boundary: the descriptor itself (SCM_RIGHTS) and one message saying
// what the new process needs to serve it as if it had just accepted it after an answer: which
// listener it came in on, who the client is (PROXY-protocol addresses included), how many
// requests it has had, and the bytes of a next request already read. One message per
// connection, one descriptor per message; SEQPACKET keeps messages whole and in order, and a
// sendmsg from any worker thread is atomic.
//
// What moves: idle keep-alive connections (parked or waiting in Asio) at once, busy ones as
// soon as their current response is written. What stays: TLS-terminated connections (their
// OpenSSL state cannot move) and passthrough tunnels (bytes in flight sit in this process's
// splice pipes); they drain in the old process (docs/internals.md, "Binary upgrade").

#include "session/context.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace wk::session {

// What travels with one connection's descriptor.
struct handoff_record {
  std::string listener;     // the listener's address as configured (net::listener_slot)
  std::size_t ordinal = 0;  // among listeners with the same address text
  std::size_t served = 0;   // requests answered on the connection so far
  client_info info;         // without `slot` and `listener_index` (local to each process)
  std::string early;        // bytes already read: the start of the next request
};

// The longest `early` that travels; a connection holding more (a deep pipeline) is served to
// the end where it is.
inline constexpr std::size_t handoff_early_limit = 64 * 1024;

// One message: a JSON object, a newline, then the early bytes as they are.
std::string encode(const handoff_record& r);
// The record, or why the message is not one.
std::variant<handoff_record, std::string> decode_handoff(std::string_view message);

// Sends `message` with descriptor `fd` on `channel` (never blocking). 0 when sent (the
// descriptor is then open in the receiving process too: the caller closes its copy), or the
// errno: EAGAIN when the channel is full, anything else when it is gone.
int send_descriptor(int channel, int fd, std::string_view message);

// Receives one message and its descriptor from `channel` (never blocking). The result: the
// message and descriptor (-1 when it carried none; close-on-exec), EOF (the sender closed its
// end: std::nullopt), or the errno (EAGAIN: nothing waiting).
struct received {
  std::string message;
  int fd = -1;
};
std::variant<received, std::nullopt_t, int> receive_descriptor(int channel);

// A worker's end of the channel (its own dup of the descriptor, watched by its io_context).
// Once a send fails for any reason but a full channel, the channel is broken for good: the
// successor is gone, and connections stay here.
class handoff_sender {
public:
  handoff_sender(const boost::asio::any_io_executor& ex, int fd);  // takes `fd`
  handoff_sender(const handoff_sender&) = delete;
  handoff_sender& operator=(const handoff_sender&) = delete;
  ~handoff_sender();

  bool open() const noexcept { return open_; }

  // Sends `fd` with `message`, waiting while the channel is full. True when sent.
  boost::asio::awaitable<bool> send(int fd, std::string message);

  std::size_t sent() const noexcept { return sent_; }

private:
  boost::asio::posix::stream_descriptor channel_;
  bool open_ = true;
  std::size_t sent_ = 0;
};

}  // namespace wk::session
