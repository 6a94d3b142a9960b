#pragma once
// `wkproxy check -c FILE [--via HOST:PORT | --dns] [--same-host | --allow HOST ...]
// [--ca-file PEM] [--json] [--timeout 10s]`: act like the certificate authority. For every token
// in the config, GET its RedirectFrom URL (through the proxy's own listener by default), follow
// redirects as a CA does (but only to the hosts a validation needs, see redirect_policy), fetch
// RedirectTo directly and compare the two bodies byte for byte. One row per token, exit 0 only
// if all pass.
//
// The pure parts (URL and redirect handling, the hop policy, reasons, formatting) are declared
// here and unit-tested without sockets; check.cpp adds the blocking network steps.

#include "cli/host_port.hpp"
#include "config/config.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace wk::cli {

// Runs the subcommand with the arguments after "check". Returns the exit code: 0 every token
// passed; 1 a token failed, there are no tokens, or the config is invalid; 2 bad arguments.
int run_check(int argc, char** argv);

// ---- Arguments

// Where the first request (RedirectFrom) is sent.
enum class first_hop {
  listener,  // the config's first HTTP listener (the default)
  via,       // --via HOST:PORT
  dns        // --dns: the domain's own DNS addresses, port 80, as the CA would
};

// Where redirects may lead. A CA follows them anywhere, from the Internet. This checker runs
// inside the operator's network, and a Location is chosen by whoever answers: the origin behind
// the proxy, CloudFront, or a tampered RedirectTo. Followed blindly, it reaches internal
// services or the cloud metadata service (169.254.169.254), and the table prints the start of
// what they answered. So a redirect is followed only to
// - the domain itself: the host of RedirectFrom (any scheme and port; http -> https is common);
// - an ACM validation host over https: a name under acm-validations.aws, where RedirectTo
//   points (e.g. validation.us-east-1.acm-validations.aws); not with same_host_only;
// - a host in `allowed` (--allow HOST).
struct redirect_policy {
  bool same_host_only = false;       // --same-host: not even ACM validation hosts
  std::vector<std::string> allowed;  // --allow: lower-case names and IP literals (no brackets)
};

// A name under acm-validations.aws ("validation.us-east-1.acm-validations.aws"; a final dot is
// ignored). Not the apex, nothing merely containing the words.
bool is_acm_validation_host(std::string_view host);

// Checks --allow's value: a host name or an IP literal ([IPv6] or bare), without scheme, port
// or path. Returns it lower-case, IPv6 without brackets; or the reason it is not a host.
std::variant<std::string, std::string> parse_allowed_host(std::string_view text);

struct check_options {
  std::string config_path;
  first_hop mode = first_hop::listener;
  host_port via;        // first_hop::via (parse_host_port)
  std::string ca_file;  // extra trust anchors (PEM) besides the system store
  bool json = false;
  config::duration timeout{10'000};  // every network step: DNS, connect, TLS, write, read
  redirect_policy redirects;         // --same-host, --allow
};

// The outcome of parsing the arguments after "check": options, or --help, or an error.
struct parsed_args {
  std::optional<check_options> options;  // set on success
  bool help = false;                     // -h / --help
  std::string error;                     // set when neither of the above
};
parsed_args parse_check_args(std::span<const std::string_view> args);

// The address the default mode sends the first request to: the first listener, with 0.0.0.0
// read as 127.0.0.1 and :: as ::1. On failure (no listener, port 0) returns the reason, which
// tells the user to pass --via.
std::variant<host_port, std::string> listener_target(const std::vector<config::listener>& listen);

// ---- URLs and the hop policy

// An absolute http(s) URL the checker can fetch.
struct fetch_url {
  bool https = false;
  std::string host;  // lower-case DNS name or IP literal (IPv6 without brackets)
  std::uint16_t port = 80;
  std::string target = "/";  // path (+ "?query"), never empty

  // Canonical form: scheme://host[:port]target, the port only when not the scheme's default.
  // Two URLs are the same resource exactly when their texts are equal.
  [[nodiscard]] std::string text() const;
  // The Host header value: host[:port], the port only when not the scheme's default.
  [[nodiscard]] std::string authority() const;
};

// Parses an absolute http:// or https:// URL (the fragment is dropped, user info refused). On
// failure returns the reason.
std::variant<fetch_url, std::string> parse_fetch_url(std::string_view url);

// Resolves a Location header value against the URL that answered (RFC 3986 section 5, with
// Boost.URL), e.g. "/b" against http://x/a is http://x/b. Only http and https results are
// accepted. On failure returns the reason.
std::variant<fetch_url, std::string> resolve_location(const fetch_url& base,
                                                      std::string_view location);

// std::nullopt when a redirect to `next` may be followed, `home` being the host of RedirectFrom;
// otherwise why not, naming `next` and how to allow it, e.g. "refused to follow the redirect to
// http://169.254.169.254/: only example.com itself and ACM validation hosts
// (https://*.acm-validations.aws) are followed; pass --allow 169.254.169.254 to follow it".
// Hosts are compared case-insensitively, IP literals as addresses, a final dot ignored.
std::optional<std::string> redirect_refusal(const redirect_policy& policy, std::string_view home,
                                            const fetch_url& next);

// A CA follows at most this many redirects for one RedirectFrom URL.
inline constexpr std::size_t max_redirects = 5;

// 301, 302, 307 and 308: the redirects a CA follows (303 and 300 are not).
bool is_followed_redirect(unsigned status);

// One request of a chain: the URL asked for and the status it answered (none: no response).
struct hop {
  std::string url;
  std::optional<unsigned> status;
};

// What to do after a response in a redirect chain.
struct hop_decision {
  enum class kind {
    done,    // a final answer: the caller judges its status and body
    follow,  // request `next`
    fail     // stop with `reason` (refused, loop, too many redirects, bad Location)
  } what = kind::done;
  fetch_url next;
  std::string reason;
};

// The hop policy. `chain` holds every request so far, the current one (which answered
// `status`) last; its first URL is RedirectFrom. A followed redirect without a Location is a
// final answer (it fails as a non-200 status). A Location that `redirects` refuses (see
// redirect_refusal) fails without being requested; one that resolves to a URL already in the
// chain is a loop; following more than max_redirects redirects fails.
hop_decision next_hop(const std::vector<hop>& chain, const fetch_url& current, unsigned status,
                      const std::optional<std::string>& location,
                      const redirect_policy& redirects = {});

// "301 -> 200"; a hop without a response shows as "no answer".
std::string chain_text(const std::vector<hop>& chain);

// ---- Reasons

// std::nullopt when the bodies are byte-for-byte equal; otherwise both lengths, the first
// differing offset and the start of what was received, e.g. "body differs from RedirectTo: got
// 120 bytes, expected 32, first difference at offset 0 (got starts "{\"backend\"...")".
std::optional<std::string> body_mismatch(std::string_view got, std::string_view expected);

// The reason a final non-200 answer fails, with a hint for the statuses that have a known cause:
// 421 (CloudFront refused the Host for the SNI), 400 and 403 (Host rejected), 404, 5xx (with the
// body's first line, e.g. the proxy's own "wkproxy: upstream refused the connection").
// `phrase` is the response's reason phrase, `body` its body (only the first line is used).
std::string status_failure(unsigned status, std::string_view phrase, std::string_view body);

// A short printable summary of a body for messages: the first non-empty line (or an HTML page's
// <title>), control characters replaced, at most `max` characters (then "...").
std::string body_first_line(std::string_view body, std::size_t max = 160);

// ---- Results and output

struct token_result {
  std::string domain;
  std::string file;
  std::string redirect_from;
  std::string redirect_to;
  bool pass = false;
  std::vector<hop> chain;
  std::string reason;                  // why it failed; empty when it passed
  std::vector<std::string> addresses;  // --dns: what the domain resolved to
};

// The rows as an aligned table (RESULT DOMAIN FILE CHAIN DETAIL), then "N passed, M failed".
std::string format_table(const std::vector<token_result>& results);

// {"results":[{"domain","file","redirect_from","redirect_to","pass","chain":[{"url","status"}],
// "reason"}],"passed":N,"failed":M}; "addresses" is added to a result when it has any (--dns).
std::string format_json(const std::vector<token_result>& results);

}  // namespace wk::cli
