// sd_notify without libsystemd, and the outcome channel of `wkproxy reload/upgrade`, against
// real unix sockets bound here. The server sending them at the right moments is
// tests/integration/test_systemd_notify.py.

#include "net/outcome_channel.hpp"
#include "net/sd_notify.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

using wk::net::sd_notifier;

namespace {

// A datagram socket bound at `address` ("/path" or "@abstract"), as systemd's.
struct receiver {
  int fd = -1;
  explicit receiver(const std::string& address) {
    fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, address.data(), address.size());
    auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
    if (address[0] == '@') {
      sa.sun_path[0] = '\0';
    } else {
      ++len;
    }
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), len) == 0);
  }
  ~receiver() { ::close(fd); }
  receiver(const receiver&) = delete;
  receiver& operator=(const receiver&) = delete;
  std::string next(int timeout_ms = 2000) const {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) {
      return "(nothing)";
    }
    char buf[4096];
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    return n < 0 ? "(error)" : std::string(buf, static_cast<std::size_t>(n));
  }
};

std::string unique(const std::string& stem) {
  return stem + std::to_string(::getpid()) + "-" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
}

}  // namespace

TEST_CASE("notifications reach a datagram socket bound at a path") {
  const std::string path = "/tmp/" + unique("wk-notify-");
  receiver r(path);
  auto n = sd_notifier::to(path);
  REQUIRE(n.enabled());
  CHECK(n.problem().empty());
  CHECK(n.notify("READY=1\nSTATUS=serving"));
  CHECK(n.notify("STOPPING=1"));
  CHECK(r.next() == "READY=1\nSTATUS=serving");
  CHECK(r.next() == "STOPPING=1");
  ::unlink(path.c_str());
}

TEST_CASE("an abstract socket is written as @name") {
  const std::string name = "@" + unique("wk-notify-test/");
  receiver r(name);
  auto n = sd_notifier::to(name);
  REQUIRE(n.enabled());
  CHECK(n.notify("RELOADING=1\n" + wk::net::monotonic_usec_field()));
  const auto got = r.next();
  CHECK(got.starts_with("RELOADING=1\nMONOTONIC_USEC="));
  CHECK(got.size() > std::string("RELOADING=1\nMONOTONIC_USEC=").size());
}

TEST_CASE("NOTIFY_SOCKET is read from the environment and left in it") {
  const std::string name = "@" + unique("wk-notify-env/");
  receiver r(name);
  REQUIRE(::setenv("NOTIFY_SOCKET", name.c_str(), 1) == 0);
  auto n = sd_notifier::from_environment();
  CHECK(n.notify("READY=1"));
  CHECK(r.next() == "READY=1");
  // A successor started on SIGUSR2 inherits it.
  CHECK(std::getenv("NOTIFY_SOCKET") != nullptr);
  ::unsetenv("NOTIFY_SOCKET");
}

TEST_CASE("without NOTIFY_SOCKET nothing is sent and nothing fails") {
  ::unsetenv("NOTIFY_SOCKET");
  auto n = sd_notifier::from_environment();
  CHECK_FALSE(n.enabled());
  CHECK(n.problem().empty());
  CHECK_FALSE(n.notify("READY=1"));
}

TEST_CASE("an unusable NOTIFY_SOCKET is reported, not used") {
  CHECK_FALSE(sd_notifier::to("relative/path").enabled());
  CHECK(sd_notifier::to("relative/path").problem().find("absolute path") != std::string::npos);
  CHECK_FALSE(sd_notifier::to("@").enabled());
  CHECK_FALSE(sd_notifier::to("/" + std::string(200, 'x')).enabled());
  // Nobody bound there: the send fails, quietly and at once.
  auto n = sd_notifier::to("@" + unique("wk-notify-nobody/"));
  CHECK(n.enabled());
  CHECK_FALSE(n.notify("READY=1"));
}

TEST_CASE("disable() stops every later notification") {
  const std::string name = "@" + unique("wk-notify-disable/");
  receiver r(name);
  auto n = sd_notifier::to(name);
  CHECK(n.notify("MAINPID=42\nREADY=1"));
  n.disable();
  CHECK_FALSE(n.notify("STOPPING=1"));
  CHECK(r.next() == "MAINPID=42\nREADY=1");
  CHECK(r.next(100) == "(nothing)");
}

TEST_CASE("the outcome reaches the command listening for this process, and only then") {
  CHECK_FALSE(wk::net::report_outcome("reloaded"));  // nobody listens: nothing waits
  auto listening = wk::net::outcome_listener::listen(::getpid());
  REQUIRE(std::holds_alternative<wk::net::outcome_listener>(listening));
  auto& l = std::get<wk::net::outcome_listener>(listening);
  // A second command on the same process is refused.
  auto second = wk::net::outcome_listener::listen(::getpid());
  REQUIRE(std::holds_alternative<std::string>(second));
  CHECK(std::get<std::string>(second).find("already waiting") != std::string::npos);
  CHECK(l.wait(std::chrono::milliseconds(50)) == std::nullopt);
  CHECK(wk::net::report_outcome("reload refused: x.yaml:1:1: origin: bad"));
  CHECK(l.wait(std::chrono::milliseconds(2000)) == "reload refused: x.yaml:1:1: origin: bad");
}

TEST_CASE("an answer from another process is not taken") {
  // Listening for our parent: our own report (a different pid) is closed unread.
  auto listening = wk::net::outcome_listener::listen(::getppid());
  REQUIRE(std::holds_alternative<wk::net::outcome_listener>(listening));
  auto& l = std::get<wk::net::outcome_listener>(listening);
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  const auto name = wk::net::outcome_address(::getppid());
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, name.data(), name.size());
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa),
                    static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size())) == 0);
  REQUIRE(::send(fd, "reloaded", 8, MSG_NOSIGNAL) == 8);
  CHECK(l.wait(std::chrono::milliseconds(200)) == std::nullopt);
  ::close(fd);
}
