#include "validation/events.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <cstdio>
#include <ctime>
#include <variant>

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

// Header values may carry any byte from 0x80 to 0xFF (obs-text), which is not UTF-8 and would
// make the JSON line invalid. Each such byte is taken as the Latin-1 character of the same
// number, as the access log's \u00XX escapes read: lossless, and always valid UTF-8.
std::string latin1_to_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80) {
      out += c;
    } else {
      out += static_cast<char>(0xC0 | (u >> 6));
      out += static_cast<char>(0x80 | (u & 0x3F));
    }
  }
  return out;
}

}  // namespace

void format_json(const event& e, std::string& out) {
  json::object o;
  o["time"] = iso_time(e.time);
  o["event"] = "validation";
  o["client"] = e.client;
  o["user_agent"] = latin1_to_utf8(e.user_agent);
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
  std::shared_ptr<const observe::log_file> out;
  switch (log.kind) {
  case config::event_log::output::stdout_stream:
    out = observe::log_file::standard(1);
    break;
  case config::event_log::output::stderr_stream:
    out = observe::log_file::standard(2);
    break;
  case config::event_log::output::off:
    break;
  case config::event_log::output::file: {
    auto opened = observe::log_file::open(log.path);
    if (auto* problem = std::get_if<std::string>(&opened)) {
      return "validation event log: " + *problem;
    }
    out = std::get<0>(std::move(opened));
    break;
  }
  }
  std::lock_guard lock(mu_);
  out_ = std::move(out);  // the previous file closes here (only this store writes to it)
  per_domain_ = per_domain;
  for (auto& [domain, list] : by_domain_) {
    while (list.size() > per_domain_) {
      list.pop_front();
    }
  }
  return {};
}

std::string event_store::reopen() {
  std::string path;
  {
    std::lock_guard lock(mu_);
    if (!out_ || out_->path().empty()) {
      return {};  // stdout, stderr or off: nothing to reopen
    }
    path = out_->path();
  }
  // Opened outside the lock: record() on the workers never waits for the file system.
  auto opened = observe::log_file::open(path);
  if (auto* problem = std::get_if<std::string>(&opened)) {
    return "validation event log: " + *problem;
  }
  std::lock_guard lock(mu_);
  out_ = std::get<0>(std::move(opened));
  return {};
}

void event_store::record(event e) {
  std::string line;
  format_json(e, line);
  std::lock_guard lock(mu_);
  if (out_) {
    (void)out_->write_all(line);  // a log that cannot be written must not stop the proxy
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

event_store& events() {
  static event_store store;
  return store;
}

}  // namespace wk::validation
