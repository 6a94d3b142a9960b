#pragma once
// How `wkproxy reload` and `wkproxy upgrade` learn what became of their signal.
//
// Before it signals process P, the command listens on the abstract unix socket
// "@wkproxy/P/outcome" (SOCK_SEQPACKET). When P has dealt with a SIGHUP or a SIGUSR2 it
// connects there, if anyone listens, and sends one line: "reloaded", "reload refused: WHY",
// "upgraded PID", "upgrade failed: WHY" or "ignored: WHY". Each side checks the other with
// SO_PEERCRED: the process answers only a listener running as its own user or as root (the
// users who may signal it), and the command takes an answer only from P itself. Nothing is
// written to disk, nothing waits: without a listener the process's connect fails at once.
// Abstract unix names belong to the network namespace: the command must run in the process's
// (the host's for a systemd service, the pod's for a sidecar).

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace wk::net {

// "\0wkproxy/PID/outcome" as sockaddr_un path bytes.
std::string outcome_address(pid_t pid);

// The process side: sends `text` to the command waiting on this process (getpid()), if one is.
// Never blocks. Returns whether a listener took it (for tests).
bool report_outcome(std::string_view text);

// The command side.
class outcome_listener {
public:
  // Listens for `pid`'s answer. The reason when it cannot ("another command is waiting on pid
  // N" when the name is taken).
  static std::variant<outcome_listener, std::string> listen(pid_t pid);
  ~outcome_listener();
  outcome_listener(outcome_listener&& other) noexcept;
  outcome_listener& operator=(outcome_listener&&) = delete;
  outcome_listener(const outcome_listener&) = delete;
  outcome_listener& operator=(const outcome_listener&) = delete;

  // Waits up to `timeout` for the process to answer; the line it sent, or nullopt. A
  // connection from any other process is closed unread.
  std::optional<std::string> wait(std::chrono::milliseconds timeout);

private:
  outcome_listener(int fd, pid_t pid) : fd_(fd), pid_(pid) {}
  int fd_ = -1;
  pid_t pid_ = -1;
};

}  // namespace wk::net
