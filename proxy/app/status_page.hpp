#pragma once
// The operator's validation status page, as pure rendering: a plain snapshot in, an HTML page or
// a JSON document out. No I/O, no locks, no clocks (the snapshot carries `now`); the admin
// server fills the snapshot and serves the result. Everything that comes from outside the
// process (User-Agent, client, file names, error texts) is treated as hostile: HTML-escaped,
// invalid UTF-8 and control characters replaced, so the page is safe whatever was sent.

#include "validation/events.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace wk::app {

struct status_snapshot {
  std::string version;  // e.g. "0.4.0 (abc1234)"
  // `now` is when the snapshot was taken; a default (epoch) `started` or `config_loaded` means
  // unknown and is shown as such.
  std::chrono::system_clock::time_point now, started, config_loaded;
  std::string config_file;
  std::vector<std::string> listeners;  // e.g. "0.0.0.0:80 http", "0.0.0.0:443 passthrough"
  bool ready = true;
  bool draining = false;

  struct upstream_state {
    std::string name;  // "origin", "cloudfront", or a fetch host
    std::string url;
    std::vector<std::string> addresses;  // as resolved, e.g. "192.0.2.10:80"
    std::string last_error;              // "" if none
    std::uint64_t errors = 0;
  };
  std::vector<upstream_state> upstreams;

  struct domain_state {
    std::string domain;                         // as configured, may be "*.example.com"
    std::string mode;                           // forward | redirect | fetch | static
    std::vector<std::string> token_files;       // configured tokens for this domain (file names)
    std::vector<wk::validation::event> events;  // newest last (as event_store::snapshot gives)
  };
  std::vector<domain_state> domains;
  // With aws: one entry per followed distribution tenant, in aws.tenants order.
  struct tenant_domain {
    std::string domain;
    std::string stage;       // validation::name_of(stage): "waiting_for_ca", ..., "safe_to_remove"
    std::string sentence;    // the plain-language state
    std::string dns_record;  // the record to create, once the routing endpoint is known
    std::string dns_status;  // VerifyDnsConfiguration's, "" before issuance
    std::string dns_reason;
    std::vector<std::string> token_files;
    std::chrono::system_clock::time_point last_fetch;  // epoch: the CA has not fetched
    unsigned last_fetch_status = 0;
    std::chrono::system_clock::time_point last_request;  // epoch: none seen
  };
  struct tenant_state {
    std::string tenant;  // as listed in aws.tenants
    std::string name;    // the distribution tenant's name, when known
    std::string certificate_status;
    std::string token_host;                              // ValidationTokenHost
    std::string routing_endpoint;                        // the connection group's CNAME target
    std::chrono::system_clock::time_point last_success;  // epoch: never
    std::string last_error;                              // "" when the last poll succeeded
    std::vector<tenant_domain> domains;
  };
  std::vector<tenant_state> tenants;
  std::string credentials_source;  // which credential step is in use, "" without aws:
};

// How much of a snapshot the page and the JSON show, so that their size does not follow the
// event store's (issue 18): per domain its newest max_events_per_domain_shown events, and at
// most max_events_shown events in all, in domain order (a domain past that budget keeps its
// hint, from its newest event, and shows no rows). The rest are counted ("N older requests not
// shown", "events_omitted"); the validation event log has every request. With the store's
// truncated strings an event takes about 0.5 KiB to 1.5 KiB on the page.
constexpr std::size_t max_events_per_domain_shown = 100;
constexpr std::size_t max_events_shown = 1000;

// How the state of a domain looks: drives the colour of the hint on the page and
// "hint_level" in the JSON ("none", "ok", "warning", "error").
enum class hint_level { none, ok, warning, error };

// The whole page: one self-contained HTML5 document (inline CSS, no script, no external
// resource, refreshes itself every 5 s). Domains in snapshot order, each with its state hint and
// its events newest first. Stable hooks for tests and scrapers:
//   <section id="process">, <dd id="state" class="state ready|not-ready|draining">,
//   <table id="upstreams"> with <tr class="upstream" data-upstream="NAME">,
//   <section class="domain" id="domain-DOMAIN" data-domain="DOMAIN" data-hint="LEVEL">,
//   <p class="hint LEVEL">, <table class="events"> with <tr class="event">.
std::string render_status_html(const status_snapshot& s);

// The same information as one JSON object (Boost.JSON, always valid UTF-8):
//   {"generated", "process": {"version", "started", "uptime_s", "config_file",
//    "config_loaded", "listeners", "ready", "draining"},
//    "upstreams": [{"name", "url", "addresses", "last_error", "errors"}],
//    "domains": [{"domain", "mode", "tokens", "hint", "hint_level", "help",
//                 "events": [{"time", "client", "user_agent", "domain", "file", "mode",
//                             "action", "status", "upstream", "location", "latency_ms",
//                             "error"}], "events_omitted"}]}
// Times are ISO 8601 UTC with milliseconds, or null when unknown; events newest first, like the
// page.
std::string render_status_json(const status_snapshot& s);

// One plain-language sentence (no final period) about the domain's validation state, chosen by
// its newest event (the last one): e.g. "answered 200 at 14:03 UTC — the CA got the token".
// Times are HH:MM UTC, with the date in front when the event is not from `now`'s UTC day.
std::string state_hint(const status_snapshot::domain_state& d,
                       std::chrono::system_clock::time_point now);

// The level that goes with state_hint() for the same domain.
hint_level state_level(const status_snapshot::domain_state& d);

// Where the guide explains the hint and what to do: "docs/onboarding.md#ts-hint-403" (the
// anchors of its Troubleshooting section, checked by tests/integration/test_docs_anchors.py).
std::string hint_help(const status_snapshot::domain_state& d);

}  // namespace wk::app
