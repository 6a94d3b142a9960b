#include "app/upgrade.hpp"

#include "net/listener.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char** environ;

namespace wk::app {

namespace {

constexpr std::string_view listen_fds_var = "WKPROXY_LISTEN_FDS";
constexpr std::string_view ready_fd_var = "WKPROXY_READY_FD";

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
       {listen_fds_var, ready_fd_var, std::string_view("LISTEN_PID"),
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
  if (const char* v = std::getenv(std::string(listen_fds_var).c_str())) {
    std::string_view text(v);
    while (!text.empty()) {
      auto semi = text.find(';');
      auto item = text.substr(0, semi);
      auto eq = item.rfind('=');
      if (eq != std::string_view::npos) {
        int fd = parse_fd(item.substr(eq + 1));
        if (fd >= 0) {
          out.by_address_[std::string(item.substr(0, eq))] = fd;
        }
      }
      if (semi == std::string_view::npos) {
        break;
      }
      text.remove_prefix(semi + 1);
    }
  }
  if (const char* v = std::getenv(std::string(ready_fd_var).c_str())) {
    out.ready_fd_ = parse_fd(v);
  }
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  if (pid != nullptr && fds != nullptr && std::atol(pid) == static_cast<long>(::getpid())) {
    const long n = std::atol(fds);
    for (long i = 0; i < n && i < 64; ++i) {
      out.activated_.push_back(3 + static_cast<int>(i));
    }
  }
  for (const char* name :
       {"WKPROXY_LISTEN_FDS", "WKPROXY_READY_FD", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}) {
    ::unsetenv(name);
  }
  for (int fd : out.activated_) {
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  for (const auto& [address, fd] : out.by_address_) {
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  if (out.ready_fd_ >= 0) {
    ::fcntl(out.ready_fd_, F_SETFD, FD_CLOEXEC);
  }
  return out;
}

int inherited_sockets::take(const config::listener& l) {
  if (auto it = by_address_.find(l.address); it != by_address_.end()) {
    int fd = it->second;
    by_address_.erase(it);
    return fd;
  }
  for (auto it = activated_.begin(); it != activated_.end(); ++it) {
    if (net::listens_on(*it, l)) {
      int fd = *it;
      activated_.erase(it);
      return fd;
    }
  }
  return -1;
}

void inherited_sockets::close_unused() {
  for (const auto& [address, fd] : by_address_) {
    ::close(fd);
  }
  by_address_.clear();
  for (int fd : activated_) {
    ::close(fd);
  }
  activated_.clear();
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

std::variant<spawned, std::string>
spawn_successor(const std::string& exe, const std::vector<std::string>& args,
                const std::vector<std::pair<std::string, int>>& listeners) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return std::string("pipe: ") + std::strerror(errno);
  }
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  std::string handoff = std::string(listen_fds_var) + "=";
  std::vector<int> keep;
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    handoff += (i ? ";" : "") + listeners[i].first + "=" + std::to_string(listeners[i].second);
    keep.push_back(listeners[i].second);
  }
  keep.push_back(pipe_fds[1]);
  std::string ready = std::string(ready_fd_var) + "=" + std::to_string(pipe_fds[1]);
  std::vector<std::string> env_store;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (!is_handoff_var(*e)) {
      env_store.emplace_back(*e);
    }
  }
  env_store.push_back(handoff);
  env_store.push_back(ready);
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
  return spawned{pid, pipe_fds[0]};
}

}  // namespace wk::app
