#include "net/sd_notify.hpp"

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <utility>

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

namespace wk::net {

sd_notifier::~sd_notifier() {
  disable();
}

sd_notifier::sd_notifier(sd_notifier&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), address_(std::move(other.address_)),
      problem_(std::move(other.problem_)) {}

sd_notifier& sd_notifier::operator=(sd_notifier&& other) noexcept {
  if (this != &other) {
    disable();
    fd_ = std::exchange(other.fd_, -1);
    address_ = std::move(other.address_);
    problem_ = std::move(other.problem_);
  }
  return *this;
}

sd_notifier sd_notifier::from_environment() {
  const char* v = std::getenv("NOTIFY_SOCKET");
  if (v == nullptr || *v == '\0') {
    return {};
  }
  return to(v);
}

sd_notifier sd_notifier::to(std::string_view address) {
  sd_notifier out;
  const std::string shown = "NOTIFY_SOCKET=" + std::string(address);
  if (address.size() < 2 || (address[0] != '/' && address[0] != '@')) {
    out.problem_ = shown + ": expected an absolute path or @name; not notifying";
    return out;
  }
  if (address.size() >= sizeof(sockaddr_un::sun_path)) {
    out.problem_ = shown + ": too long for a unix socket address; not notifying";
    return out;
  }
  out.address_ = std::string(address);
  if (address[0] == '@') {
    out.address_[0] = '\0';  // abstract: the name is the bytes after the NUL, no terminator
  }
  out.fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (out.fd_ < 0) {
    out.problem_ = shown + ": socket: " + std::strerror(errno) + "; not notifying";
    return out;
  }
  // A blocking send waits while the manager's queue is full: at most this long.
  timeval tv{};
  tv.tv_sec = 1;
  ::setsockopt(out.fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return out;
}

bool sd_notifier::notify(std::string_view state) const {
  if (fd_ < 0) {
    return false;
  }
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, address_.data(), address_.size());
  // A path is NUL-terminated (sa is zeroed); an abstract name is exactly its bytes.
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size() +
                                          (address_[0] == '\0' ? 0 : 1));
  for (;;) {
    const auto n = ::sendto(fd_, state.data(), state.size(), MSG_NOSIGNAL,
                            reinterpret_cast<const sockaddr*>(&sa), len);
    if (n >= 0) {
      return true;
    }
    if (errno != EINTR) {
      return false;
    }
  }
}

void sd_notifier::disable() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

std::string monotonic_usec_field() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const auto usec = static_cast<unsigned long long>(ts.tv_sec) * 1'000'000ULL +
                    static_cast<unsigned long long>(ts.tv_nsec) / 1'000ULL;
  return "MONOTONIC_USEC=" + std::to_string(usec);
}

}  // namespace wk::net
