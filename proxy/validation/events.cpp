#include "validation/events.hpp"

#include "core/host_pattern.hpp"
#include "core/time_text.hpp"

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serializer.hpp>
#include <boost/json/string.hpp>

#include <algorithm>
#include <utility>
#include <variant>

namespace wk::validation {

namespace json = boost::json;

namespace {

// Header values may carry any byte from 0x80 to 0xFF (obs-text), which is not UTF-8 and would
// make the JSON line invalid. Each such byte is taken as the Latin-1 character of the same
// number, as the access log's \u00XX escapes read: lossless, and always valid UTF-8.
void latin1_to_utf8(std::string_view s, json::string& out) {
  out.reserve(out.size() + 2 * s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80) {
      out.push_back(c);
    } else {
      out.push_back(static_cast<char>(0xC0 | (u >> 6)));
      out.push_back(static_cast<char>(0x80 | (u & 0x3F)));
    }
  }
}

// At most `max` bytes of `s`. The cut may split a UTF-8 sequence: the status page and the JSON
// line already take any byte sequence (U+FFFD, Latin-1).
std::string_view cut(std::string_view s, std::size_t max) {
  return s.substr(0, std::min(s.size(), max));
}

event_view truncated(const event_view& e) {
  event_view t = e;
  t.client = cut(e.client, event_store::max_short_bytes);
  t.user_agent = cut(e.user_agent, event_store::max_user_agent_bytes);
  t.domain = cut(e.domain, event_store::max_host_bytes);
  t.file = cut(e.file, event_store::max_file_bytes);
  t.mode = cut(e.mode, event_store::max_short_bytes);
  t.action = cut(e.action, event_store::max_short_bytes);
  t.upstream = cut(e.upstream, event_store::max_location_bytes);
  t.location = cut(e.location, event_store::max_location_bytes);
  t.error = cut(e.error, event_store::max_short_bytes);
  return t;
}

// Into a kept slot: assign() reuses the capacity the slot's strings already have.
void store(event& slot, const event_view& e) {
  slot.time = e.time;
  slot.client.assign(e.client);
  slot.user_agent.assign(e.user_agent);
  slot.domain.assign(e.domain);
  slot.file.assign(e.file);
  slot.mode.assign(e.mode);
  slot.action.assign(e.action);
  slot.status = e.status;
  slot.upstream.assign(e.upstream);
  slot.location.assign(e.location);
  slot.latency_ms = e.latency_ms;
  slot.error.assign(e.error);
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

event_view view_of(const event& e) {
  return event_view{e.time,   e.client, e.user_agent, e.domain,   e.file,       e.mode,
                    e.action, e.status, e.upstream,   e.location, e.latency_ms, e.error};
}

void format_json(const event_view& e, std::string& out) {
  // The object and its strings live in this stack buffer (a truncated event needs under 3 KiB;
  // a longer one would take the rest from the heap): no allocation per line.
  unsigned char storage[6144];
  json::monotonic_resource mr(storage, sizeof storage);
  thread_local std::string stamp;
  stamp.clear();
  core::append_iso8601_millis(stamp, e.time);
  json::object o(&mr);
  o.reserve(13);
  o.emplace("time", stamp);
  o.emplace("event", "validation");
  o.emplace("client", e.client);
  json::string ua(&mr);
  latin1_to_utf8(e.user_agent, ua);
  o.emplace("user_agent", std::move(ua));
  o.emplace("domain", e.domain);
  o.emplace("file", e.file);
  o.emplace("mode", e.mode);
  o.emplace("action", e.action);
  o.emplace("status", e.status);
  o.emplace("upstream", e.upstream);
  if (!e.location.empty()) {
    o.emplace("location", e.location);
  }
  o.emplace("latency_ms", e.latency_ms);
  o.emplace("error", e.error);
  json::serializer sr;
  sr.reset(&o);
  char chunk[1024];
  while (!sr.done()) {
    const auto part = sr.read(chunk, sizeof chunk);
    out.append(part.data(), part.size());
  }
  out += '\n';
}

std::vector<event> event_store::ring::in_order() const {
  std::vector<event> out;
  out.reserve(slots.size());
  for (std::size_t i = 0; i < slots.size(); ++i) {
    out.push_back(slots[(next + i) % slots.size()]);
  }
  return out;
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
    if (list.slots.size() > per_domain_) {
      auto newest = list.in_order();
      newest.erase(newest.begin(), newest.end() - static_cast<std::ptrdiff_t>(per_domain_));
      list.slots = std::move(newest);
      list.next = 0;
    } else if (list.slots.size() < per_domain_ && list.next != 0) {
      list.slots = list.in_order();  // room again: the ring grows from its oldest event on
      list.next = 0;
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

void event_store::record(const event_view& whole) {
  const auto e = truncated(whole);
  std::lock_guard lock(mu_);
  if (out_) {
    line_.clear();
    format_json(e, line_);         // the real host (truncated), whatever its bucket
    (void)out_->write_all(line_);  // a log that cannot be written must not stop the proxy
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
      it = by_bucket_.emplace(std::string(full ? other_bucket : bucket), ring{}).first;
    }
  }
  auto& list = it->second;
  if (list.slots.size() < per_domain_) {
    list.slots.emplace_back();
    store(list.slots.back(), e);
    return;
  }
  store(list.slots[list.next], e);
  list.next = (list.next + 1) % list.slots.size();
}

std::map<std::string, std::vector<event>> event_store::snapshot() const {
  std::lock_guard lock(mu_);
  std::map<std::string, std::vector<event>> out;
  for (const auto& [bucket, list] : by_bucket_) {
    if (!list.slots.empty()) {
      out[bucket] = list.in_order();
    }
  }
  return out;
}

event_store& events() {
  static event_store store;
  return store;
}

}  // namespace wk::validation
