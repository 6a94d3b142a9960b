#pragma once
// Listening sockets that outlive a process: handed to a new wkproxy binary on SIGUSR2 (binary
// upgrade without closing the port) or passed in by systemd (socket activation). The new
// process takes them over as they are — no second bind, no SO_REUSEPORT — so a connection
// waiting in an accept queue is never reset.
//
// What the environment names is checked, not trusted: a descriptor is used only if it is a
// listening TCP socket bound where its listener is configured, and only such descriptors are
// ever closed here. Anything else named (a file, a pipe, a descriptor that is not open) is left
// alone with a warning: it belongs to whoever opened it.

#include "config/config.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <sys/types.h>

#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace wk::app {

// What this process inherited. Read once at startup; the variables are then removed from the
// environment so they do not leak into anything started later.
//   WKPROXY_LISTEN_FDS="ADDRESS=FD;...;admin@ADDRESS=FD"
//                         from the wkproxy being upgraded: each public listener's configured
//                         address, in listener order (several listeners may share one address
//                         text, e.g. "127.0.0.1:0": the k-th entry of a text goes to the k-th
//                         listener with it), and the admin listener's under its own key
//                         ("admin@" never starts an address, so it cannot be taken for a
//                         public listener of the same address text)
//   WKPROXY_READY_FD=FD   a pipe: write "ready\n" there once serving
//   WKPROXY_HANDOFF_FD=FD a Unix SOCK_SEQPACKET socket: once serving, take over the client
//                         connections the old process sends on it (session/handoff.hpp)
//   LISTEN_PID / LISTEN_FDS  systemd socket activation (descriptors 3, 4, ...)
class inherited_sockets {
public:
  static inherited_sockets from_environment();

  // The inherited descriptor for public listener `l`: -1 when there is none (bind it), or why
  // the socket inherited for it must not be used (bound elsewhere: refuse to serve). Each
  // descriptor is handed out once.
  std::variant<int, std::string> take(const config::listener& l);
  // The same for the admin listener (`admin` as its address): its "admin@" entry, or a socket
  // from systemd bound exactly to its address and (non-zero) port.
  std::variant<int, std::string> take_admin(const config::listener& admin);
  // Closes the inherited listening sockets that were not taken (a listener the new config
  // dropped). Only descriptors verified as listening TCP sockets are closed.
  void close_unused();
  // Tells the process that started us (if any) that we serve now.
  void signal_ready();
  // The channel the old process hands its connections over on (-1: none), owned by the caller.
  int take_handoff_channel() {
    const int fd = handoff_fd_;
    handoff_fd_ = -1;
    return fd;
  }
  // Whether a wkproxy upgrading to us waits for signal_ready (it, not we, tells systemd).
  bool from_upgrade() const { return ready_fd_ >= 0; }

  // Entries of the environment that were ignored, and why (for the log).
  const std::vector<std::string>& warnings() const { return warnings_; }

private:
  struct entry {
    std::string address;  // the configured address it was handed over for; "" from systemd
    int fd = -1;
    boost::asio::ip::tcp::endpoint bound;  // where it listens (checked at startup)
    bool admin = false;
    bool taken = false;
  };
  std::variant<int, std::string> hand_out(entry& e, const config::listener& l);
  bool named(int fd) const;

  std::vector<entry> handed_;     // WKPROXY_LISTEN_FDS, in the order given
  std::vector<entry> activated_;  // systemd's
  std::vector<std::string> warnings_;
  int ready_fd_ = -1;
  int handoff_fd_ = -1;
};

// One listening socket handed to a successor: its listener's configured address and its
// descriptor.
struct handed_socket {
  std::string address;
  int fd = -1;
};

struct spawned {
  pid_t pid = -1;
  int ready_fd = -1;    // read end: "ready\n" when the new process serves, EOF if it died
  int handoff_fd = -1;  // this process's end of the connection hand-over channel
};

// The WKPROXY_LISTEN_FDS value for `listeners` (in listener order) and `admin`.
std::string handoff_value(const std::vector<handed_socket>& listeners,
                          const std::optional<handed_socket>& admin);

// Starts `exe` with `args` (argv[0] included) and the current environment plus the hand-off
// variables for `listeners` and `admin`. Every other descriptor of this process is closed in
// the child. Returns the reason on failure.
std::variant<spawned, std::string> spawn_successor(const std::string& exe,
                                                   const std::vector<std::string>& args,
                                                   const std::vector<handed_socket>& listeners,
                                                   const std::optional<handed_socket>& admin);

}  // namespace wk::app
