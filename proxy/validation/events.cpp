#include "validation/events.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include <fcntl.h>
#include <unistd.h>

namespace wk::validation {

namespace json = boost::json;

namespace {

std::string iso_time(std::chrono::system_clock::time_point t) {
  const auto secs = std::chrono::time_point_cast<std::chrono::seconds>(t);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(t - secs).count();
  const auto tt = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char stamp[64];
  const auto n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(stamp + n, sizeof stamp - n, ".%03dZ", static_cast<int>(millis));
  return stamp;
}

void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const auto n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;  // a log that cannot be written must not stop the proxy
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

void format_json(const event& e, std::string& out) {
  json::object o;
  o["time"] = iso_time(e.time);
  o["event"] = "validation";
  o["client"] = e.client;
  o["user_agent"] = e.user_agent;
  o["domain"] = e.domain;
  o["file"] = e.file;
  o["mode"] = e.mode;
  o["action"] = e.action;
  o["status"] = e.status;
  o["upstream"] = e.upstream;
  if (!e.location.empty()) {
    o["location"] = e.location;
  }
  o["latency_ms"] = e.latency_ms;
  o["error"] = e.error;
  out += json::serialize(o);
  out += '\n';
}

std::string event_store::configure(const config::event_log& log, std::size_t per_domain) {
  int fd = -1;
  bool own = false;
  switch (log.kind) {
  case config::event_log::output::stdout_stream:
    fd = 1;
    break;
  case config::event_log::output::stderr_stream:
    fd = 2;
    break;
  case config::event_log::output::off:
    fd = -1;
    break;
  case config::event_log::output::file:
    fd = ::open(log.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
      return "cannot open validation event log " + log.path + ": " + std::strerror(errno);
    }
    own = true;
    break;
  }
  std::lock_guard lock(mu_);
  if (own_fd_ && fd_ >= 0) {
    ::close(fd_);
  }
  fd_ = fd;
  own_fd_ = own;
  path_ = log.path;
  per_domain_ = per_domain;
  for (auto& [domain, list] : by_domain_) {
    while (list.size() > per_domain_) {
      list.pop_front();
    }
  }
  return {};
}

void event_store::record(event e) {
  std::string line;
  format_json(e, line);
  std::lock_guard lock(mu_);
  if (fd_ >= 0) {
    write_all(fd_, line);
  }
  auto& list = by_domain_[e.domain];
  list.push_back(std::move(e));
  while (list.size() > per_domain_) {
    list.pop_front();
  }
}

std::map<std::string, std::vector<event>> event_store::snapshot() const {
  std::lock_guard lock(mu_);
  std::map<std::string, std::vector<event>> out;
  for (const auto& [domain, list] : by_domain_) {
    out[domain] = std::vector<event>(list.begin(), list.end());
  }
  return out;
}

event_store::~event_store() {
  if (own_fd_ && fd_ >= 0) {
    ::close(fd_);
  }
}

event_store& events() {
  static event_store store;
  return store;
}

}  // namespace wk::validation
