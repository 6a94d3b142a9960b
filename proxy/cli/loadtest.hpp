#pragma once
// `wkproxy loadtest --target HOST:PORT [--duration 10s] [--keepalive 8] [--fresh 2]
// [--event AT:SHELLCMD ...] [--request-id HEADER] [--json]`: a closed-loop HTTP/1.1 load
// generator that proves (or disproves) zero downtime. Keep-alive loops send back-to-back GETs on
// long-lived connections, fresh loops open a new connection per request; shell commands (SIGHUP,
// SIGUSR2, a restart) run at given times during the load, and every request is classified: ok
// (2xx), non-2xx, connect error, reset (written, no complete response), timeout, and with
// --request-id mixed (the answer echoed another request's id, or a 2xx answer echoed none: a
// response answered twice, or given to the wrong request). The report gives the counts and latency
// percentiles over the whole run and in a window after each event.
//
// The pure parts (arguments, percentiles, aggregation, the two output formats) are declared
// here and unit-tested without sockets; loadtest.cpp adds the event loop and the processes.

#include "config/config.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace wk::cli {

// Runs the subcommand with the arguments after "loadtest". Returns the exit code: 0 every
// request got a 2xx answer; 1 a request failed (or the target cannot be resolved); 2 bad
// arguments.
int run_loadtest(int argc, char** argv);

// ---- Arguments

// `--event AT:SHELLCMD`: run SHELLCMD with /bin/sh -c at AT after the start of the load.
struct load_event {
  config::duration at{0};
  std::string command;
};

struct loadtest_options {
  std::string target;  // --target as given, e.g. "127.0.0.1:8080"
  std::string host;    // its host; an IPv6 literal without brackets
  std::uint16_t port = 0;
  std::string host_header;  // --host; defaults to the target
  std::string path = "/";
  config::duration duration{10'000};
  unsigned keepalive = 8;  // connections doing back-to-back keep-alive requests
  unsigned fresh = 2;      // loops opening a new connection per request
  std::vector<load_event> events;
  config::duration window{1'000};   // per-event statistics: requests started this long after
  config::duration timeout{5'000};  // per request: connect, write and the complete response
  // --request-id HEADER: each request carries a unique id in this header field, and its answer
  // must echo it in the same field (see check_echo). Empty: no ids.
  std::string request_id;
  bool json = false;
};

// Parses "AT:SHELLCMD" (AT a duration such as 2s, 1.5, 500ms; the command non-empty). On
// failure returns the reason.
std::variant<load_event, std::string> parse_event(std::string_view text);

// The outcome of parsing the arguments after "loadtest": options, or --help, or an error.
struct loadtest_args {
  std::optional<loadtest_options> options;  // set on success
  bool help = false;                        // -h / --help
  std::string error;                        // set when neither of the above
};
loadtest_args parse_loadtest_args(std::span<const std::string_view> args);

// ---- Requests and their aggregation

enum class outcome {
  ok,             // a complete 2xx response
  non_2xx,        // a complete response with another status
  connect_error,  // no connection (refused, unreachable, or none within --timeout)
  reset,          // the request was written (or being written) but the connection broke before
                  // a complete response: RST, EOF, a write error, an unparsable response
  timeout,        // no complete response within --timeout
  mixed  // --request-id: a complete response that is not this request's answer (see check_echo)
};

// "ok", "non-2xx", "connect error", "reset", "timeout", "mixed".
std::string_view outcome_name(outcome o);

// A request failed when it did not end with a 2xx response (a mixed one is a failure).
bool failed(outcome o);

// In --path, replaced by each request's id (--request-id): a route that does not forward the
// id field (the validation route forwards only a few fields to CloudFront) still carries it.
inline constexpr std::string_view id_placeholder = "{id}";

// `path` with every {id} replaced by `id`.
std::string request_target(std::string_view path, std::string_view id);

// The id of a loop's seq-th request in run `run` (unique per process and start time):
// "RUN-LOOP-SEQ". A retry on a new connection sends the same id: it is the same request.
std::string request_id_value(std::string_view run, unsigned loop, std::uint64_t seq);

// --request-id: judges a complete response (what = ok or non_2xx) by the values of the id
// field it carries. Any value other than `sent` (one is enough: a second, duplicated field
// counts too) is another request's answer: mixed. No value on a 2xx answer is mixed as well,
// since nothing shows it answers this request; no value on another status is left as non_2xx
// (the proxy's own 502/503/504 carry no id). Other outcomes are returned unchanged.
outcome check_echo(outcome what, std::span<const std::string_view> echoed, std::string_view sent);

using micros = std::chrono::microseconds;

// One request as the load generator saw it. Times are relative to the start of the load.
struct request_record {
  micros start{0};    // when the request began (before connecting, when it had to)
  micros latency{0};  // until the complete response or the failure, a retry included
  outcome what = outcome::ok;
  unsigned status = 0;       // the response status (ok / non_2xx), else 0
  bool retried = false;      // sent a second time: the reused keep-alive connection it was first
                             // sent on closed before a single response byte arrived
  bool reconnected = false;  // a keep-alive loop opened a new connection for it because the
                             // server had closed the previous one cleanly between requests
};

// Nearest-rank percentile (q in [0, 1]) of ascending values: the smallest value such that at
// least a fraction q of all values are less than or equal to it. 0 for an empty list.
micros percentile(std::span<const micros> sorted, double q);

struct load_summary {
  std::uint64_t sent = 0;  // requests begun (each once, however many attempts it took)
  std::uint64_t ok = 0;
  std::uint64_t non_2xx = 0;
  std::uint64_t connect_errors = 0;
  std::uint64_t resets = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t mixed = 0;
  std::uint64_t retried = 0;     // not failures: each also counts under its final outcome
  std::uint64_t reconnects = 0;  // not failures either
  // Latency of the requests that got a complete response (ok and non-2xx).
  micros p50{0};
  micros p99{0};
  micros max{0};

  [[nodiscard]] std::uint64_t failed() const {
    return non_2xx + connect_errors + resets + timeouts + mixed;
  }
};

// Counts and latency percentiles of the records that started in [from, to).
load_summary summarize(std::span<const request_record> records, micros from = micros::min(),
                       micros to = micros::max());

// ---- The report

struct event_result {
  load_event event;
  std::optional<micros> started;   // when the command was started; none: it never was
  std::optional<micros> finished;  // when it exited; none: still running at the end
  int exit_code = -1;              // 0..255, or 128 + signal number; -1 when unknown
  std::string error;               // why the command could not be started
  load_summary window;             // requests started in [started, started + window)
};

struct load_report {
  std::string target;  // "127.0.0.1:8080"
  std::string host_header;
  std::string path;
  std::string request_id;  // the --request-id header, or empty
  unsigned keepalive = 0;
  unsigned fresh = 0;
  config::duration window{1'000};
  micros elapsed{0};  // from the start of the load to the end of the last request
  load_summary total;
  std::vector<event_result> events;
  // Distinct failure causes ("connect: Connection refused", "status 502") with their counts,
  // most frequent first.
  std::vector<std::pair<std::string, std::uint64_t>> errors;
};

// Fills in `total` and each started event's window from the records.
void aggregate(load_report& report, std::span<const request_record> records);

// Requests begun per second of elapsed time (0 when nothing elapsed).
double requests_per_second(const load_report& report);

// A header line, an aligned table (one row for the whole run, one per event window), the event
// commands with their exit codes, the failure causes, then "PASS: ..." or "FAIL: ...".
std::string format_text(const load_report& report);

// {"target","host","path","request_id","keepalive","fresh","window_ms","elapsed_ms",
//  "requests_per_second",
//  "total":{"sent","ok","non_2xx","connect_errors","resets","timeouts","mixed","retried",
//           "reconnects","failed","latency_us":{"p50","p99","max"}},
//  "events":[{"at_ms","command","started_ms","finished_ms","exit_code","error","window":{...}}],
//  "errors":[{"error","count"}],"pass"}. All numbers are integers; started_ms, finished_ms and
// exit_code are null when unknown.
std::string format_json(const load_report& report);

// 0 when no request failed, 1 otherwise (event exit codes are reported, not judged).
int exit_code(const load_report& report);

}  // namespace wk::cli
