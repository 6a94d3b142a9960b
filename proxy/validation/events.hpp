#pragma once
// Validation events: one structured record per request that reached the validation route,
// written as a JSON line to its own stream or file (apart from the bulk access log) and kept in
// memory, the last N per bucket, for the status page. Validation requests are rare in real life
// (a CA's few fetches per certificate) but a load test or a flood can send thousands a second,
// so recording one costs no heap allocation once its bucket is full: each bucket is a ring of
// events whose strings are reused, and the JSON line is built on the stack, only when a log
// output is configured. One mutex, held for the copy into the ring (and the line's write).
//
// Memory is bounded whatever the Internet sends (issue 18: a "*" or "*.example.com" allow-list
// must not let every new Host header add a list of its own):
// - events are kept per bucket, not per host: a configured exact name or token domain is its
//   own bucket; a host matched by a configured "*.suffix" pattern goes to that pattern's bucket,
//   else to "*" when configured; anything else to one shared bucket, other_bucket;
// - at most max_buckets buckets (the first max_buckets - 1 configured names, in bucket_names()
//   order, and other_bucket): names beyond share other_bucket;
// - at most events_per_domain events per bucket, the oldest dropped first;
// - the strings of an event are truncated to the max_*_bytes below before they are logged or
//   kept, so one event holds at most about 2.5 KiB (strings, allocator overhead and all).
// Together: at most max_buckets x events_per_domain events, and only as many buckets as the
// configuration names (plus one) can ever be filled.

#include "config/config.hpp"
#include "observe/log_file.hpp"

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace wk::validation {

struct event {
  std::chrono::system_clock::time_point time;
  std::string client;      // "ip:port"
  std::string user_agent;  // as sent (truncated when recorded)
  std::string domain;      // normalized Host (truncated when recorded)
  std::string file;        // the token file name
  std::string mode;        // forward | redirect | fetch | static
  std::string action;      // forward | redirect | fetch | static | not_found | origin
  unsigned status = 0;     // what the client got (the upstream's status when proxied); 0: none
  std::string upstream;    // "cloudfront", "origin", the RedirectTo host for fetch; "" if local
  std::string location;    // redirect: the Location sent
  double latency_ms = 0;
  std::string error;  // failure name, "" when none
};

// The same, as the request handling has it at hand: nothing is copied until it is kept.
struct event_view {
  std::chrono::system_clock::time_point time;
  std::string_view client;
  std::string_view user_agent;
  std::string_view domain;
  std::string_view file;
  std::string_view mode;
  std::string_view action;
  unsigned status = 0;
  std::string_view upstream;
  std::string_view location;
  double latency_ms = 0;
  std::string_view error;
};

event_view view_of(const event& e);

// Appends `e` as one JSON object and a newline to `out`.
void format_json(const event_view& e, std::string& out);
inline void format_json(const event& e, std::string& out) {
  format_json(view_of(e), out);
}

// The names the store keeps events for, in the status page's order: validation.domains (exact
// names and patterns) as configured, then the token domains not listed there.
std::vector<std::string> bucket_names(const config::config& cfg);

class event_store {
public:
  // The bounds described at the top of this file.
  static constexpr std::size_t max_buckets = 4096;
  static constexpr std::size_t max_user_agent_bytes = 256;
  static constexpr std::size_t max_host_bytes = 255;  // a DNS name has at most 253
  static constexpr std::size_t max_file_bytes = 128;
  static constexpr std::size_t max_location_bytes = 512;  // location, upstream
  static constexpr std::size_t max_short_bytes = 64;      // client, mode, action, error
  // The bucket of hosts that are neither a configured name nor matched by a pattern; not a
  // valid host name, so it cannot collide with a configured one.
  static constexpr std::string_view other_bucket = "(other)";

  // Main thread, at start and on reload: where lines go, how many events to keep per bucket and
  // the configured names (see bucket_names()). Buckets of names no longer configured are
  // dropped. Returns an error text if a file cannot be opened (nothing changes then).
  std::string configure(const config::event_log& log, std::size_t per_domain,
                        const std::vector<std::string>& names = {});

  // Main thread, on SIGUSR1: a file output is opened again at its path (after logrotate
  // renamed it). Returns an error text if it cannot be (the open file is kept).
  std::string reopen();

  // Any thread: truncates the strings of `e`, writes its line and keeps it in its bucket.
  void record(const event_view& e);
  void record(const event& e) { record(view_of(e)); }

  // Any thread: the bucket a normalized host's events go to (a configured name, or
  // other_bucket).
  std::string bucket_of(std::string_view host) const;

  // The kept events, newest last, per bucket (buckets without events are left out).
  std::map<std::string, std::vector<event>> snapshot() const;

private:
  std::string_view bucket_locked(std::string_view host) const;

  mutable std::mutex mu_;
  // A bucket's last per_domain_ events: filled in order, then overwritten oldest first
  // (`next`), each slot's strings keeping their capacity.
  struct ring {
    std::vector<event> slots;
    std::size_t next = 0;
    std::vector<event> in_order() const;
  };
  std::map<std::string, ring, std::less<>> by_bucket_;
  std::string line_;                          // the JSON line being written (under mu_)
  std::set<std::string, std::less<>> exact_;  // configured names with a bucket
  std::map<std::string, std::string, std::less<>> suffixes_;  // ".example.com" -> pattern
  bool any_ = false;                                          // "*" configured (and has a bucket)
  std::size_t per_domain_ = 50;
  std::shared_ptr<const observe::log_file> out_ = observe::log_file::standard(2);  // null: off
};

// The process's store.
event_store& events();

}  // namespace wk::validation
