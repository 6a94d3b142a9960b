#pragma once
// Listening sockets that outlive a process: handed to a new wkproxy binary on SIGUSR2 (binary
// upgrade without closing the port) or passed in by systemd (socket activation). The new
// process takes them over as they are — no second bind, no SO_REUSEPORT — so a connection
// waiting in an accept queue is never reset.

#include "config/config.hpp"

#include <sys/types.h>

#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace wk::app {

// What this process inherited. Read once at startup; the variables are then removed from the
// environment so they do not leak into anything started later.
//   WKPROXY_LISTEN_FDS="ADDRESS=FD;..."  from the wkproxy being upgraded (ADDRESS as configured)
//   WKPROXY_READY_FD=FD                  write "ready\n" there once serving
//   LISTEN_PID / LISTEN_FDS              systemd socket activation (descriptors 3, 4, ...)
class inherited_sockets {
public:
  static inherited_sockets from_environment();

  // The inherited descriptor for listener `l`, or -1. Each descriptor is handed out once.
  int take(const config::listener& l);
  // Closes whatever was inherited and not taken (a listener the new config dropped).
  void close_unused();
  // Tells the process that started us (if any) that we serve now.
  void signal_ready();

  bool empty() const { return by_address_.empty() && activated_.empty(); }

private:
  std::map<std::string, int> by_address_;
  std::vector<int> activated_;
  int ready_fd_ = -1;
};

struct spawned {
  pid_t pid = -1;
  int ready_fd = -1;  // read end: "ready\n" when the new process serves, EOF if it died
};

// Starts `exe` with `args` (argv[0] included) and the current environment plus the hand-off
// variables for `listeners` (configured address, listening descriptor). Every other descriptor
// of this process is closed in the child. Returns the reason on failure.
std::variant<spawned, std::string>
spawn_successor(const std::string& exe, const std::vector<std::string>& args,
                const std::vector<std::pair<std::string, int>>& listeners);

}  // namespace wk::app
