#pragma once
// The service manager's notification protocol (sd_notify(3)) without libsystemd: datagrams of
// "KEY=VALUE" lines to the AF_UNIX socket named by NOTIFY_SOCKET (a path, or "@name" for the
// abstract namespace). Without NOTIFY_SOCKET nothing is sent and nothing fails.
//
// NOTIFY_SOCKET is read, not removed: a successor started on SIGUSR2 inherits it with the rest
// of the environment, so each process of a chain of upgrades can speak to systemd in turn.

#include <string>
#include <string_view>

namespace wk::net {

class sd_notifier {
public:
  sd_notifier() = default;  // sends nothing
  ~sd_notifier();
  sd_notifier(sd_notifier&& other) noexcept;
  sd_notifier& operator=(sd_notifier&& other) noexcept;
  sd_notifier(const sd_notifier&) = delete;
  sd_notifier& operator=(const sd_notifier&) = delete;

  // From NOTIFY_SOCKET (read once, here). An unusable value gives a notifier that sends
  // nothing, with problem() saying why.
  static sd_notifier from_environment();
  // To `address`: "/path" or "@abstract-name". For tests, and for from_environment.
  static sd_notifier to(std::string_view address);

  bool enabled() const { return fd_ >= 0; }
  // Sends `state` ("READY=1", "STATUS=...\nMAINPID=...") as one datagram. Never blocks for
  // more than a second (a service manager that does not read its queue); false when nothing
  // was sent (disabled, or the send failed).
  bool notify(std::string_view state) const;
  // From now on, sends nothing (this process is no longer the one the manager follows).
  void disable();
  // Why NOTIFY_SOCKET could not be used ("" when it was, or when unset).
  const std::string& problem() const { return problem_; }

private:
  int fd_ = -1;
  std::string address_;  // as sockaddr_un bytes: sun_path with a leading NUL when abstract
  std::string problem_;
};

// "MONOTONIC_USEC=N": CLOCK_MONOTONIC now in microseconds (sent with RELOADING=1).
std::string monotonic_usec_field();

}  // namespace wk::net
