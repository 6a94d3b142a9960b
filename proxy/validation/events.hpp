#pragma once
// Validation events: one structured record per request that reached the validation route,
// written as a JSON line to its own stream or file (apart from the bulk access log) and kept in
// memory, the last N per domain, for the status page. Validation requests are rare (a CA's
// few fetches per certificate), so one mutex is fine here; nothing on the pass-through path
// touches this.

#include "config/config.hpp"
#include "observe/log_file.hpp"

#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace wk::validation {

struct event {
  std::chrono::system_clock::time_point time;
  std::string client;      // "ip:port"
  std::string user_agent;  // as sent
  std::string domain;      // normalized Host
  std::string file;        // the token file name
  std::string mode;        // forward | redirect | fetch | static
  std::string action;      // forward | redirect | fetch | static | not_found | origin
  unsigned status = 0;     // what the client got (the upstream's status when proxied); 0: none
  std::string upstream;    // "cloudfront", "origin", the RedirectTo host for fetch; "" if local
  std::string location;    // redirect: the Location sent
  double latency_ms = 0;
  std::string error;  // failure name, "" when none
};

// Appends `e` as one JSON object and a newline to `out`.
void format_json(const event& e, std::string& out);

class event_store {
public:
  // Main thread, at start and on reload: where lines go and how many events to keep per domain.
  // Returns an error text if a file cannot be opened (the previous output is kept).
  std::string configure(const config::event_log& log, std::size_t per_domain);

  // Main thread, on SIGUSR1: a file output is opened again at its path (after logrotate
  // renamed it). Returns an error text if it cannot be (the open file is kept).
  std::string reopen();

  // Any thread.
  void record(event e);

  // The kept events, newest last, per domain.
  std::map<std::string, std::vector<event>> snapshot() const;

private:
  mutable std::mutex mu_;
  std::map<std::string, std::deque<event>> by_domain_;
  std::size_t per_domain_ = 50;
  std::shared_ptr<const observe::log_file> out_ = observe::log_file::standard(2);  // null: off
};

// The process's store.
event_store& events();

}  // namespace wk::validation
