#include "validation/events.hpp"

#include "core/host_pattern.hpp"
#include "core/time_text.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <utility>
#include <variant>

namespace wk::validation {

namespace json = boost::json;

namespace {

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

// Cuts `s` to at most `max` bytes. The cut may split a UTF-8 sequence: the status page and the
// JSON line already take any byte sequence (U+FFFD, Latin-1).
void truncate(std::string& s, std::size_t max) {
  if (s.size() > max) {
    s.resize(max);
    s.shrink_to_fit();
  }
}

void truncate(event& e) {
  truncate(e.client, event_store::max_short_bytes);
  truncate(e.user_agent, event_store::max_user_agent_bytes);
  truncate(e.domain, event_store::max_host_bytes);
  truncate(e.file, event_store::max_file_bytes);
  truncate(e.mode, event_store::max_short_bytes);
  truncate(e.action, event_store::max_short_bytes);
  truncate(e.upstream, event_store::max_location_bytes);
  truncate(e.location, event_store::max_location_bytes);
  truncate(e.error, event_store::max_short_bytes);
}

}  // namespace

std::vector<std::string> bucket_names(const config::config& cfg) {
  std::vector<std::string> names = cfg.validation.domains;
  for (const auto& t : cfg.tokens) {
    if (std::find(names.begin(), names.end(), t.domain) == names.end()) {
      names.push_back(t.domain);
    }
  }
  return names;
}

void format_json(const event& e, std::string& out) {
  json::object o;
  o["time"] = core::iso8601_millis(e.time);
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

std::string event_store::configure(const config::event_log& log, std::size_t per_domain,
                                   const std::vector<std::string>& names) {
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
  // Which names get a bucket, decided here once: other_bucket always has one, the first
  // max_buckets - 1 distinct names the others, so no traffic can ever add one.
  std::set<std::string, std::less<>> exact;
  std::map<std::string, std::string, std::less<>> suffixes;
  bool any = false;
  std::size_t buckets = 1;
  for (const auto& name : names) {
    if (buckets >= max_buckets) {
      break;
    }
    bool added = false;
    if (name == "*") {
      added = !std::exchange(any, true);
    } else if (name.starts_with("*.")) {
      added = suffixes.emplace(name.substr(1), name).second;
    } else {
      added = exact.insert(name).second;
    }
    buckets += added ? 1 : 0;
  }
  std::lock_guard lock(mu_);
  out_ = std::move(out);  // the previous file closes here (only this store writes to it)
  per_domain_ = per_domain;
  exact_ = std::move(exact);
  suffixes_ = std::move(suffixes);
  any_ = any;
  for (auto it = by_bucket_.begin(); it != by_bucket_.end();) {
    auto& [bucket, list] = *it;
    const bool kept = bucket == other_bucket || exact_.contains(bucket) ||
                      (bucket == "*" && any_) ||
                      (bucket.starts_with("*.") && suffixes_.contains(bucket.substr(1)));
    if (!kept) {
      it = by_bucket_.erase(it);
      continue;
    }
    while (list.size() > per_domain_) {
      list.pop_front();
    }
    ++it;
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

std::string_view event_store::bucket_locked(std::string_view host) const {
  if (auto it = exact_.find(host); it != exact_.end()) {
    return *it;
  }
  // "*.example.com" matches exactly one more label: the host minus its first label.
  if (const auto suffix = core::wildcard_suffix(host); !suffix.empty()) {
    if (auto it = suffixes_.find(suffix); it != suffixes_.end()) {
      return it->second;
    }
  }
  return any_ ? std::string_view("*") : other_bucket;
}

std::string event_store::bucket_of(std::string_view host) const {
  std::lock_guard lock(mu_);
  return std::string(bucket_locked(host));
}

void event_store::record(event e) {
  truncate(e);
  std::string line;
  format_json(e, line);  // the real host (truncated), whatever its bucket
  std::lock_guard lock(mu_);
  if (out_) {
    (void)out_->write_all(line);  // a log that cannot be written must not stop the proxy
  }
  if (per_domain_ == 0) {
    return;
  }
  const auto bucket = bucket_locked(e.domain);
  auto it = by_bucket_.find(bucket);
  if (it == by_bucket_.end()) {
    // configure() hands out at most max_buckets names; checked again here so that no change to
    // the matching above can ever make the store grow with the traffic.
    const bool full = by_bucket_.size() >= max_buckets;
    it = full ? by_bucket_.find(other_bucket) : it;
    if (it == by_bucket_.end()) {
      it = by_bucket_.emplace(std::string(full ? other_bucket : bucket), std::deque<event>{}).first;
    }
  }
  auto& list = it->second;
  if (list.size() >= per_domain_) {
    list.pop_front();
  }
  list.push_back(std::move(e));
}

std::map<std::string, std::vector<event>> event_store::snapshot() const {
  std::lock_guard lock(mu_);
  std::map<std::string, std::vector<event>> out;
  for (const auto& [bucket, list] : by_bucket_) {
    out[bucket] = std::vector<event>(list.begin(), list.end());
  }
  return out;
}

event_store& events() {
  static event_store store;
  return store;
}

}  // namespace wk::validation
