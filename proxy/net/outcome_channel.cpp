#include "net/outcome_channel.hpp"

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <utility>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace wk::net {

namespace {

sockaddr_un address_of(const std::string& name, socklen_t& len) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, name.data(), name.size());
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  return sa;
}

std::optional<ucred> peer_of(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return std::nullopt;
  }
  return cred;
}

}  // namespace

std::string outcome_address(pid_t pid) {
  return std::string(1, '\0') + "wkproxy/" + std::to_string(pid) + "/outcome";
}

bool report_outcome(std::string_view text) {
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return false;
  }
  socklen_t len = 0;
  const auto sa = address_of(outcome_address(::getpid()), len);
  bool sent = false;
  // ECONNREFUSED (nobody listens) is the usual case; EAGAIN (a full backlog) is not waited for.
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa), len) == 0) {
    const auto peer = peer_of(fd);
    if (peer && (peer->uid == 0 || peer->uid == ::geteuid())) {
      sent = ::send(fd, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT) ==
             static_cast<ssize_t>(text.size());
    }
  }
  ::close(fd);
  return sent;
}

std::variant<outcome_listener, std::string> outcome_listener::listen(pid_t pid) {
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return std::string("socket: ") + std::strerror(errno);
  }
  socklen_t len = 0;
  const auto name = outcome_address(pid);
  const auto sa = address_of(name, len);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&sa), len) != 0 || ::listen(fd, 4) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EADDRINUSE) {
      return "another command is already waiting for pid " + std::to_string(pid) + " (@" +
             name.substr(1) + " is taken)";
    }
    return "@" + name.substr(1) + ": " + std::strerror(err);
  }
  return outcome_listener(fd, pid);
}

outcome_listener::~outcome_listener() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

outcome_listener::outcome_listener(outcome_listener&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), pid_(other.pid_) {}

std::optional<std::string> outcome_listener::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::max<long long>(0, left.count())));
    if (ready < 0 && errno == EINTR) {
      continue;
    }
    if (ready <= 0) {
      return std::nullopt;
    }
    const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      continue;
    }
    const auto peer = peer_of(c);
    std::optional<std::string> got;
    if (peer && peer->pid == pid_) {
      pollfd q{c, POLLIN, 0};
      char buf[4096];
      if (::poll(&q, 1, 1000) > 0) {
        const auto n = ::recv(c, buf, sizeof buf, 0);
        if (n > 0) {
          got = std::string(buf, static_cast<std::size_t>(n));
        }
      }
    }
    ::close(c);
    if (got) {
      return got;
    }
  }
}

}  // namespace wk::net
