#include "app/upgrade.hpp"

#include "core/endpoint.hpp"
#include "net/listener.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char** environ;

namespace wk::app {

namespace {

constexpr std::string_view listen_fds_var = "WKPROXY_LISTEN_FDS";
constexpr std::string_view ready_fd_var = "WKPROXY_READY_FD";
constexpr std::string_view handoff_fd_var = "WKPROXY_HANDOFF_FD";
// The admin listener's key: a configured address starts with a digit, '[' or ':', never '@' or
// a letter, so this entry can never be taken for a public listener, whatever its address.
constexpr std::string_view admin_prefix = "admin@";

int parse_fd(std::string_view text) {
  if (text.empty() || text.size() > 9) {
    return -1;
  }
  int v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return -1;
    }
    v = v * 10 + (c - '0');
  }
  return v >= 3 ? v : -1;
}

bool is_handoff_var(std::string_view entry) {
  for (std::string_view name :
       {listen_fds_var, ready_fd_var, handoff_fd_var, std::string_view("LISTEN_PID"),
        std::string_view("LISTEN_FDS"), std::string_view("LISTEN_FDNAMES")}) {
    if (entry.size() > name.size() && entry.starts_with(name) && entry[name.size()] == '=') {
      return true;
    }
  }
  return false;
}

}  // namespace

inherited_sockets inherited_sockets::from_environment() {
  inherited_sockets out;
  if (const char* v = std::getenv(std::string(ready_fd_var).c_str())) {
    // Written to and closed once serving: only ever a pipe, never some other open file.
    const int fd = parse_fd(v);
    struct stat st {};
    if (fd >= 0 && ::fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) {
      out.ready_fd_ = fd;
    } else {
      out.warnings_.push_back(std::string(ready_fd_var) + "=" + v +
                              " is not a pipe; ignored (left open)");
    }
  }
  if (const char* v = std::getenv(std::string(handoff_fd_var).c_str())) {
    // Only ever a Unix sequenced-packet socket, never some other open file.
    const int fd = parse_fd(v);
    int domain = 0;
    int type = 0;
    socklen_t len = sizeof domain;
    socklen_t tlen = sizeof type;
    if (fd >= 0 && fd != out.ready_fd_ &&
        ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX &&
        ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 && type == SOCK_SEQPACKET) {
      out.handoff_fd_ = fd;
    } else {
      out.warnings_.push_back(std::string(handoff_fd_var) + "=" + v +
                              " is not a Unix sequenced-packet socket; ignored (left open)");
    }
  }
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  if (pid != nullptr && fds != nullptr && std::atol(pid) == static_cast<long>(::getpid())) {
    const long n = std::atol(fds);
    for (long i = 0; i < n && i < 64; ++i) {
      const int fd = 3 + static_cast<int>(i);
      if (auto ep = net::listening_endpoint(fd)) {
        out.activated_.push_back({"", fd, *ep});
      } else {
        out.warnings_.push_back("LISTEN_FDS: descriptor " + std::to_string(fd) +
                                " is not a listening TCP socket; ignored (left open)");
      }
    }
  }
  if (const char* v = std::getenv(std::string(listen_fds_var).c_str())) {
    const std::string var(listen_fds_var);
    std::string_view text(v);
    while (!text.empty()) {
      const auto semi = text.find(';');
      const auto item = text.substr(0, semi);
      text.remove_prefix(semi == std::string_view::npos ? text.size() : semi + 1);
      if (item.empty()) {
        continue;
      }
      const auto eq = item.rfind('=');
      const int fd = eq == std::string_view::npos ? -1 : parse_fd(item.substr(eq + 1));
      if (fd < 0) {
        out.warnings_.push_back(var + ": ignoring \"" + std::string(item) +
                                "\" (expected ADDRESS=FD, FD 3 or more)");
        continue;
      }
      std::string_view key = item.substr(0, eq);
      const bool admin = key.starts_with(admin_prefix);
      if (admin) {
        key.remove_prefix(admin_prefix.size());
      }
      const std::string what = "descriptor " + std::to_string(fd) + " (for " +
                               (admin ? "admin listener " : "") + std::string(key) + ")";
      // Two listeners must never own one descriptor: each would close it.
      if (out.named(fd) || fd == out.ready_fd_ || fd == out.handoff_fd_) {
        out.warnings_.push_back(var + ": " + what + " is named twice; ignored");
        continue;
      }
      auto ep = net::listening_endpoint(fd);
      if (!ep) {
        out.warnings_.push_back(var + ": " + what +
                                " is not a listening TCP socket; ignored (left open)");
        continue;
      }
      out.handed_.push_back({std::string(key), fd, *ep, admin});
    }
  }
  for (const char* name : {"WKPROXY_LISTEN_FDS", "WKPROXY_READY_FD", "WKPROXY_HANDOFF_FD",
                           "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}) {
    ::unsetenv(name);
  }
  // Ours now: not passed on to anything this process starts (a successor gets them explicitly).
  for (const auto& e : out.activated_) {
    ::fcntl(e.fd, F_SETFD, FD_CLOEXEC);
  }
  for (const auto& e : out.handed_) {
    ::fcntl(e.fd, F_SETFD, FD_CLOEXEC);
  }
  if (out.ready_fd_ >= 0) {
    ::fcntl(out.ready_fd_, F_SETFD, FD_CLOEXEC);
  }
  if (out.handoff_fd_ >= 0) {
    ::fcntl(out.handoff_fd_, F_SETFD, FD_CLOEXEC);
  }
  return out;
}

bool inherited_sockets::named(int fd) const {
  const auto is = [fd](const entry& e) { return e.fd == fd; };
  return std::any_of(handed_.begin(), handed_.end(), is) ||
         std::any_of(activated_.begin(), activated_.end(), is);
}

std::variant<int, std::string> inherited_sockets::hand_out(entry& e, const config::listener& l) {
  e.taken = true;
  const std::string source = e.address.empty() ? "LISTEN_FDS" : std::string(listen_fds_var);
  const std::string what =
      l.address + ": inherited descriptor " + std::to_string(e.fd) + " (" + source + ")";
  // The address text only says which listener an entry is for; where the socket really listens
  // is what decides (a socket bound to 0.0.0.0 must not serve a 127.0.0.1 listener).
  if (!net::matches(e.bound, l)) {
    return what + " listens on " + core::endpoint_text(e.bound) + ", not on " + l.address +
           "; refusing to serve on it";
  }
  // Two descriptors of one socket (a dup) would make two listeners of it.
  for (const auto* list : {&handed_, &activated_}) {
    for (const auto& other : *list) {
      if (&other != &e && other.taken && other.bound == e.bound) {
        return what + " listens on " + core::endpoint_text(e.bound) +
               ", like inherited descriptor " + std::to_string(other.fd) +
               " already in use; refusing to serve on it";
      }
    }
  }
  return e.fd;
}

std::variant<int, std::string> inherited_sockets::take(const config::listener& l) {
  // In order: the k-th entry of an address text goes to the k-th listener with that text.
  for (auto& e : handed_) {
    if (!e.taken && !e.admin && e.address == l.address) {
      return hand_out(e, l);
    }
  }
  for (auto& e : activated_) {
    if (!e.taken && net::matches(e.bound, l)) {
      return hand_out(e, l);
    }
  }
  return -1;
}

std::variant<int, std::string> inherited_sockets::take_admin(const config::listener& admin) {
  for (auto& e : handed_) {
    if (!e.taken && e.admin && e.address == admin.address) {
      return hand_out(e, admin);
    }
  }
  // From systemd only on its exact port: with port 0, "any port" would take a socket meant for
  // something else.
  for (auto& e : activated_) {
    if (!e.taken && admin.port != 0 && net::matches(e.bound, admin)) {
      return hand_out(e, admin);
    }
  }
  return -1;
}

void inherited_sockets::close_unused() {
  for (auto* list : {&handed_, &activated_}) {
    for (auto& e : *list) {
      if (!e.taken) {
        ::close(e.fd);  // verified as a listening TCP socket when it was read
        e.taken = true;
      }
    }
  }
}

void inherited_sockets::signal_ready() {
  if (ready_fd_ < 0) {
    return;
  }
  constexpr std::string_view msg = "ready\n";
  (void)!::write(ready_fd_, msg.data(), msg.size());
  ::close(ready_fd_);
  ready_fd_ = -1;
}

std::string handoff_value(const std::vector<handed_socket>& listeners,
                          const std::optional<handed_socket>& admin) {
  std::string out;
  for (const auto& l : listeners) {
    out += (out.empty() ? "" : ";") + l.address + "=" + std::to_string(l.fd);
  }
  if (admin) {
    out += (out.empty() ? "" : ";") + std::string(admin_prefix) + admin->address + "=" +
           std::to_string(admin->fd);
  }
  return out;
}

std::variant<spawned, std::string> spawn_successor(const std::string& exe,
                                                   const std::vector<std::string>& args,
                                                   const std::vector<handed_socket>& listeners,
                                                   const std::optional<handed_socket>& admin) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return std::string("pipe: ") + std::strerror(errno);
  }
  // The connection hand-over channel: [0] stays here, [1] goes to the child.
  int channel[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) != 0) {
    const int err = errno;
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    return std::string("socketpair: ") + std::strerror(err);
  }
  // Room for many messages at once (each is a few hundred bytes, plus any early bytes).
  const int sndbuf = 4 << 20;
  ::setsockopt(channel[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  std::string handoff = std::string(listen_fds_var) + "=" + handoff_value(listeners, admin);
  std::vector<int> keep;
  for (const auto& l : listeners) {
    keep.push_back(l.fd);
  }
  if (admin) {
    keep.push_back(admin->fd);
  }
  keep.push_back(pipe_fds[1]);
  keep.push_back(channel[1]);
  std::string ready = std::string(ready_fd_var) + "=" + std::to_string(pipe_fds[1]);
  std::string handoff_var = std::string(handoff_fd_var) + "=" + std::to_string(channel[1]);
  std::vector<std::string> env_store;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (!is_handoff_var(*e)) {
      env_store.emplace_back(*e);
    }
  }
  env_store.push_back(handoff);
  env_store.push_back(ready);
  env_store.push_back(handoff_var);
  std::vector<char*> envp;
  for (auto& e : env_store) {
    envp.push_back(e.data());
  }
  envp.push_back(nullptr);
  std::vector<std::string> arg_store = args;
  std::vector<char*> argv;
  for (auto& a : arg_store) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    ::close(channel[0]);
    ::close(channel[1]);
    return std::string("fork: ") + std::strerror(err);
  }
  if (pid == 0) {
    // Child. Client and upstream connections must not survive into the new process (a client
    // would wait for a close that never comes): mark every descriptor close-on-exec, then clear
    // the flag on exactly the ones handed over.
    if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
      const long max = ::sysconf(_SC_OPEN_MAX);
      for (int fd = 3; fd < (max > 0 ? max : 65536); ++fd) {
        ::fcntl(fd, F_SETFD, FD_CLOEXEC);
      }
    }
    for (int fd : keep) {
      ::fcntl(fd, F_SETFD, 0);
    }
    ::execve(exe.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  ::close(channel[1]);
  return spawned{pid, pipe_fds[0], channel[0]};
}

}  // namespace wk::app
