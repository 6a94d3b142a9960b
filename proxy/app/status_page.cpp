// Why this file is over 600 lines: it renders one page in two forms (HTML and JSON) from one
// snapshot, with the text hygiene both need (UTF-8 cleaning, escaping) and the page's markup and
// styles inline, so that a reviewer can check every dynamic value's escaping in one place.

#include "app/status_page.hpp"

#include "core/time_text.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <ctime>
#include <string_view>

namespace wk::app {

namespace json = boost::json;
using sys_clock = std::chrono::system_clock;

namespace {

// ---------------------------------------------------------------------------------------------
// Text hygiene: everything dynamic goes through clean() (valid UTF-8, no control characters)
// and, for HTML, through escape() on top.

constexpr std::string_view replacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed UTF-8 sequence starting at s[i] (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF), or 0 when the byte there does not start one.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    return 1;
  }
  std::size_t n = 0;
  unsigned lo = 0x80;
  unsigned hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 == 0xE0) {
    n = 3;
    lo = 0xA0;
  } else if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) {
    n = 3;
  } else if (b0 == 0xED) {
    n = 3;
    hi = 0x9F;
  } else if (b0 == 0xF0) {
    n = 4;
    lo = 0x90;
  } else if (b0 >= 0xF1 && b0 <= 0xF3) {
    n = 4;
  } else if (b0 == 0xF4) {
    n = 4;
    hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() - i < n) {
    return 0;
  }
  const auto b1 = static_cast<unsigned char>(s[i + 1]);
  if (b1 < lo || b1 > hi) {
    return 0;
  }
  for (std::size_t k = 2; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (b < 0x80 || b > 0xBF) {
      return 0;
    }
  }
  return n;
}

// `s` as valid UTF-8 without control characters: header values may carry any obs-text byte
// (RFC 9110 section 5.5), and neither an HTML page nor a JSON document should pass them on.
// Each offending byte or character becomes U+FFFD; tab stays. At most `max_bytes` bytes of
// input are kept (on a character boundary), "…" marks the cut.
std::string clean(std::string_view s, std::size_t max_bytes = std::string_view::npos) {
  std::string out;
  out.reserve(s.size() < max_bytes ? s.size() : max_bytes + 3);
  std::size_t i = 0;
  while (i < s.size()) {
    if (i >= max_bytes) {
      out += "\xE2\x80\xA6";  // U+2026
      break;
    }
    const auto n = utf8_length(s, i);
    const auto b0 = static_cast<unsigned char>(s[i]);
    const bool c0 = n == 1 && ((b0 < 0x20 && b0 != '\t') || b0 == 0x7F);
    const bool c1 = n == 2 && b0 == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0;
    if (n == 0 || c0 || c1) {
      out += replacement;
      i += n == 0 ? 1 : n;
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

// Appends `s` cleaned and HTML-escaped: safe in element content and in quoted attributes.
void append_text(std::string& out, std::string_view s,
                 std::size_t max_bytes = std::string_view::npos) {
  for (char c : clean(s, max_bytes)) {
    switch (c) {
    case '&':
      out += "&amp;";
      break;
    case '<':
      out += "&lt;";
      break;
    case '>':
      out += "&gt;";
      break;
    case '"':
      out += "&quot;";
      break;
    case '\'':
      out += "&#39;";
      break;
    default:
      out += c;
    }
  }
}

// The id of a domain's section, and the same as a URL fragment (percent-encoded outside a
// conservative set, so "#..." finds the id whatever the configured name holds).
std::string domain_id(std::string_view domain) {
  return "domain-" + std::string(domain);
}

std::string fragment_of(std::string_view id) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out = "#";
  for (char c : id) {
    const auto u = static_cast<unsigned char>(c);
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '.' || c == '_' || c == '*';
    if (plain) {
      out += c;
    } else {
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 0xF];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Times.

bool known(sys_clock::time_point t) {
  return t.time_since_epoch().count() != 0;
}

std::tm utc(sys_clock::time_point t) {
  const auto tt = sys_clock::to_time_t(std::chrono::time_point_cast<std::chrono::seconds>(t));
  std::tm tm{};
  gmtime_r(&tt, &tm);
  return tm;
}

std::string strftime_utc(sys_clock::time_point t, const char* format) {
  const auto tm = utc(t);
  char buf[64];
  const auto n = std::strftime(buf, sizeof buf, format, &tm);
  return {buf, n};
}

// "2024-05-01 14:03:07 UTC" for people.
std::string human_time(sys_clock::time_point t) {
  return strftime_utc(t, "%Y-%m-%d %H:%M:%S UTC");
}

// "14:03 UTC", or "2024-05-01 14:03 UTC" when `t` is not on `now`'s UTC day.
std::string hint_time(sys_clock::time_point t, sys_clock::time_point now) {
  const auto a = utc(t);
  const auto b = utc(now);
  const bool same_day = a.tm_year == b.tm_year && a.tm_yday == b.tm_yday;
  return strftime_utc(t, same_day ? "%H:%M UTC" : "%Y-%m-%d %H:%M UTC");
}

// "3d 04h 05m 06s", leading zero units left out.
std::string human_duration(std::chrono::seconds d) {
  auto s = d.count() < 0 ? 0 : d.count();
  const auto days = s / 86400;
  const auto hours = s / 3600 % 24;
  const auto minutes = s / 60 % 60;
  s %= 60;
  char buf[64];
  if (days > 0) {
    std::snprintf(buf, sizeof buf, "%lldd %02lldh %02lldm %02llds", static_cast<long long>(days),
                  static_cast<long long>(hours), static_cast<long long>(minutes),
                  static_cast<long long>(s));
  } else if (hours > 0) {
    std::snprintf(buf, sizeof buf, "%lldh %02lldm %02llds", static_cast<long long>(hours),
                  static_cast<long long>(minutes), static_cast<long long>(s));
  } else if (minutes > 0) {
    std::snprintf(buf, sizeof buf, "%lldm %02llds", static_cast<long long>(minutes),
                  static_cast<long long>(s));
  } else {
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  }
  return buf;
}

std::chrono::seconds uptime(const status_snapshot& s) {
  return std::chrono::floor<std::chrono::seconds>(s.now - s.started);
}

// ---------------------------------------------------------------------------------------------
// State hints.

enum class hint_case {
  origin,       // not a known token: the origin answered
  unreachable,  // upstream_* failure, or 502/504
  redirected,   // redirect mode sent the client to RedirectTo
  answered,     // 200 with the token
  cf_421,       // CloudFront: SNI/Host mismatch
  cf_403,       // CloudFront: domain not attached to a tenant
  not_found,    // 404
  other
};

bool is_redirect(unsigned status) {
  return status == 301 || status == 302 || status == 307 || status == 308;
}

hint_case classify(const validation::event& e) {
  if (e.action == "origin") {
    return hint_case::origin;
  }
  if (e.error.starts_with("upstream_") || e.status == 502 || e.status == 504) {
    return hint_case::unreachable;
  }
  if (!e.error.empty()) {
    return hint_case::other;  // e.g. client_gone: whatever the status says, it may not have arrived
  }
  if (e.action == "redirect" && is_redirect(e.status)) {
    return hint_case::redirected;
  }
  const bool answers_token = e.action == "forward" || e.action == "fetch" || e.action == "static";
  if (e.status == 200 && answers_token) {
    return hint_case::answered;
  }
  if (e.status == 421 && e.action == "forward") {
    return hint_case::cf_421;
  }
  if (e.status == 403 && e.action == "forward") {
    return hint_case::cf_403;
  }
  if (e.status == 404) {
    return hint_case::not_found;
  }
  return hint_case::other;
}

hint_level level_of(hint_case c, const validation::event* e) {
  switch (c) {
  case hint_case::redirected:
  case hint_case::answered:
    return hint_level::ok;
  case hint_case::origin:
    return hint_level::warning;
  case hint_case::unreachable:
  case hint_case::cf_421:
  case hint_case::cf_403:
  case hint_case::not_found:
    return hint_level::error;
  case hint_case::other:
    break;
  }
  if (e != nullptr && e->error.empty() && e->status >= 200 && e->status < 400) {
    return hint_level::ok;
  }
  return hint_level::warning;
}

std::string_view level_name(hint_level l) {
  switch (l) {
  case hint_level::none:
    return "none";
  case hint_level::ok:
    return "ok";
  case hint_level::warning:
    return "warning";
  case hint_level::error:
    return "error";
  }
  return "none";
}

std::string not_found_hint(const validation::event& e) {
  if (e.action == "fetch") {
    const std::string host = e.upstream.empty() ? "the RedirectTo host" : e.upstream;
    return "last answer was 404 from " + host +
           " — ACM does not know this token; check the tokens / RedirectTo";
  }
  if (e.action == "static") {
    return "last answer was 404 — wkproxy has no file for this token; check the tokens / "
           "static_dir";
  }
  if (e.action == "not_found") {
    return "last answer was 404 from wkproxy — the file is not a token of this domain "
           "(unknown_token: not_found); check the tokens / RedirectFrom";
  }
  return "last answer was 404 — CloudFront or the origin does not know this token; check the "
         "tokens / RedirectFrom";
}

std::string unreachable_hint(const validation::event& e, sys_clock::time_point now) {
  std::string upstream = e.upstream;
  if (upstream.empty()) {
    upstream = e.action == "forward" ? "cloudfront"
               : e.action == "fetch" ? "the RedirectTo host"
                                     : "the upstream";
  }
  const std::string error = e.error.empty() ? "status " + std::to_string(e.status) : e.error;
  return "could not reach " + upstream + ": " + error + " at " + hint_time(e.time, now);
}

std::string other_hint(const validation::event& e, sys_clock::time_point now) {
  if (e.status == 0) {
    std::string out = "last request got no answer";
    if (!e.error.empty()) {
      out += " (" + e.error + ")";
    }
    return out + " at " + hint_time(e.time, now);
  }
  std::string out = "last answer was " + std::to_string(e.status) + " at " + hint_time(e.time, now);
  if (!e.error.empty()) {
    out += " (" + e.error + ")";
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// HTML.

// Inline, no external resource. Text colours reach 7:1 contrast on their backgrounds (WCAG AAA);
// the state is always in the words too, never in the colour alone.
constexpr std::string_view style = R"css(
:root{color-scheme:light}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1a1a1a;background:#fff}
header,main{max-width:80rem;margin:0 auto;padding:0 1rem}
header{border-bottom:1px solid #c8ccd2;padding-top:.5rem;padding-bottom:.5rem}
h1{font-size:1.4rem;margin:.3rem 0}
h2{font-size:1.2rem;margin:1.5rem 0 .5rem;border-bottom:1px solid #c8ccd2}
h3{font-size:1.1rem;margin:0 0 .4rem;font-family:ui-monospace,Menlo,Consolas,monospace}
.meta{margin:.2rem 0;color:#444}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}
dl.facts dt{font-weight:600}
dl.facts dd{margin:0}
ul.plain{list-style:none;margin:0;padding:0}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}
.state{font-weight:700}
.state.ready{color:#0b5b1f}.state.not-ready{color:#8a1c13}.state.draining{color:#7a4100}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:.3rem 0 1rem}
caption{text-align:left;font-weight:600;padding:.2rem 0;color:#333}
th,td{border:1px solid #c8ccd2;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#eef1f5}
td{overflow-wrap:break-word}
td.user-agent,td.upstream,td.error-text{overflow-wrap:anywhere}
td.user-agent{min-width:12rem}
td.upstream{min-width:14rem}
td.num{text-align:right;white-space:nowrap}
td.time{white-space:nowrap}
tbody tr:nth-child(even){background:#f7f8fa}
section.domain{border:1px solid #c8ccd2;border-radius:6px;padding:.7rem 1rem;margin:1rem 0}
p.hint{margin:.5rem 0;padding:.4rem .6rem;border-left:5px solid;border-radius:3px;font-weight:600}
.hint.ok,.level.ok{background:#e6f4ea;color:#0b5b1f;border-color:#0b5b1f}
.hint.warning,.level.warning{background:#fff4e5;color:#7a4100;border-color:#a65800}
.hint.error,.level.error{background:#fdecea;color:#8a1c13;border-color:#8a1c13}
.hint.none,.level.none{background:#eef1f5;color:#33404d;border-color:#5b6b7b}
td.level{border-color:#c8ccd2}
.status-2xx{color:#0b5b1f;font-weight:600}.status-3xx{color:#0b4f8a;font-weight:600}
.status-4xx,.status-5xx{color:#8a1c13;font-weight:600}
.error-text{color:#8a1c13}
.absent{color:#555;font-style:italic}
p.omitted{margin:.3rem 0;color:#444;font-style:italic}
span.help{font-weight:400;font-size:.9em}
)css";

void append_time_element(std::string& out, sys_clock::time_point t) {
  if (!known(t)) {
    out += "<span class=\"absent\">unknown</span>";
    return;
  }
  out += "<time datetime=\"";
  out += core::iso8601_millis(t);
  out += "\">";
  out += human_time(t);
  out += "</time>";
}

void append_none(std::string& out, std::string_view text) {
  out += "<span class=\"absent\">";
  out += text;
  out += "</span>";
}

void append_cell(std::string& out, std::string_view text, std::string_view cls = {},
                 std::size_t max_bytes = std::string_view::npos) {
  out += "<td";
  if (!cls.empty()) {
    out += " class=\"";
    out += cls;
    out += '"';
  }
  out += '>';
  if (text.empty()) {
    append_none(out, "—");
  } else {
    append_text(out, text, max_bytes);
  }
  out += "</td>";
}

void append_process(std::string& out, const status_snapshot& s) {
  out += "<section id=\"process\" aria-labelledby=\"process-title\">"
         "<h2 id=\"process-title\">Process</h2><dl class=\"facts\">";
  out += "<dt>Version</dt><dd id=\"version\">";
  if (s.version.empty()) {
    append_none(out, "unknown");
  } else {
    append_text(out, s.version);
  }
  out += "</dd><dt>State</dt>";
  if (s.draining) {
    out += "<dd id=\"state\" class=\"state draining\">draining (finishing open connections)</dd>";
  } else if (s.ready) {
    out += "<dd id=\"state\" class=\"state ready\">ready</dd>";
  } else {
    out += "<dd id=\"state\" class=\"state not-ready\">not ready</dd>";
  }
  out += "<dt>Uptime</dt><dd id=\"uptime\">";
  if (known(s.started)) {
    out += human_duration(uptime(s));
    out += " (since ";
    append_time_element(out, s.started);
    out += ")";
  } else {
    append_none(out, "unknown");
  }
  out += "</dd><dt>Config file</dt><dd id=\"config-file\">";
  if (s.config_file.empty()) {
    append_none(out, "none");
  } else {
    out += "<code>";
    append_text(out, s.config_file);
    out += "</code>";
  }
  out += "</dd><dt>Config loaded</dt><dd id=\"config-loaded\">";
  append_time_element(out, s.config_loaded);
  out += "</dd><dt>Listeners</dt><dd>";
  if (s.listeners.empty()) {
    append_none(out, "none");
  } else {
    out += "<ul id=\"listeners\" class=\"plain\">";
    for (const auto& l : s.listeners) {
      out += "<li><code>";
      append_text(out, l);
      out += "</code></li>";
    }
    out += "</ul>";
  }
  out += "</dd></dl></section>\n";
}

void append_upstreams(std::string& out, const status_snapshot& s) {
  out += "<section id=\"upstreams-section\" aria-labelledby=\"upstreams-title\">"
         "<h2 id=\"upstreams-title\">Upstreams</h2>";
  out += "<div class=\"scroll\"><table id=\"upstreams\"><caption>Upstreams and their resolved "
         "addresses</caption><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">URL</th>"
         "<th scope=\"col\">Addresses</th><th scope=\"col\">Errors</th>"
         "<th scope=\"col\">Last error</th></tr></thead><tbody>";
  if (s.upstreams.empty()) {
    out += "<tr><td colspan=\"5\"><span class=\"absent\">no upstream</span></td></tr>";
  }
  for (const auto& u : s.upstreams) {
    out += "<tr class=\"upstream\" data-upstream=\"";
    append_text(out, u.name);
    out += "\">";
    append_cell(out, u.name, "mono");
    append_cell(out, u.url, "mono");
    out += "<td class=\"mono\">";
    if (u.addresses.empty()) {
      append_none(out, "not resolved");
    }
    for (std::size_t i = 0; i < u.addresses.size(); ++i) {
      if (i > 0) {
        out += "<br>";
      }
      append_text(out, u.addresses[i]);
    }
    out += "</td><td class=\"num\">";
    out += std::to_string(u.errors);
    out += "</td>";
    append_cell(out, u.last_error, "error-text");
    out += "</tr>";
  }
  out += "</tbody></table></div></section>\n";
}

// The tenants the CloudFront API client follows: per tenant its certificate, and per domain the
// plain-language stage with the DNS record to create (issue 16). Hooks: <section id="tenants">,
// <tr class="tenant-domain" data-tenant="T" data-domain="D" data-stage="STAGE">.
void append_tenants(std::string& out, const status_snapshot& s) {
  if (s.tenants.empty() && s.credentials_source.empty()) {
    return;
  }
  out += "<section id=\"tenants\" aria-labelledby=\"tenants-title\">"
         "<h2 id=\"tenants-title\">Tenants (CloudFront API)</h2><p class=\"meta\">Credentials: ";
  if (s.credentials_source.empty()) {
    append_none(out, "none yet");
  } else {
    append_text(out, s.credentials_source);
  }
  out += "</p>";
  for (const auto& t : s.tenants) {
    out += "<div class=\"scroll\"><table class=\"tenant\" data-tenant=\"";
    append_text(out, t.tenant);
    out += "\"><caption>";
    append_text(out, t.tenant);
    if (!t.name.empty() && t.name != t.tenant) {
      out += " (";
      append_text(out, t.name);
      out += ")";
    }
    out += " · certificate ";
    if (t.certificate_status.empty()) {
      append_none(out, "unknown");
    } else {
      append_text(out, t.certificate_status);
    }
    if (!t.routing_endpoint.empty()) {
      out += " · routing endpoint <code>";
      append_text(out, t.routing_endpoint);
      out += "</code>";
    }
    out += " · last answer ";
    if (known(t.last_success)) {
      append_time_element(out, t.last_success);
    } else {
      append_none(out, "never");
    }
    if (!t.last_error.empty()) {
      out += " · <span class=\"error-text\">";
      append_text(out, t.last_error);
      out += "</span>";
    }
    out += "</caption><thead><tr><th scope=\"col\">Domain</th><th scope=\"col\">State</th>"
           "<th scope=\"col\">DNS record</th><th scope=\"col\">DNS status</th>"
           "<th scope=\"col\">Tokens</th></tr></thead><tbody>";
    if (t.domains.empty()) {
      out += "<tr><td colspan=\"5\"><span class=\"absent\">no domain known yet</span></td></tr>";
    }
    for (const auto& d : t.domains) {
      out += "<tr class=\"tenant-domain\" data-tenant=\"";
      append_text(out, t.tenant);
      out += "\" data-domain=\"";
      append_text(out, d.domain);
      out += "\" data-stage=\"";
      append_text(out, d.stage);
      out += "\">";
      append_cell(out, d.domain, "mono");
      append_cell(out, d.sentence, "");
      append_cell(out, d.dns_record, "mono");
      append_cell(out, d.dns_status + (d.dns_reason.empty() ? "" : ": " + d.dns_reason), "");
      std::string files;
      for (const auto& f : d.token_files) {
        files += (files.empty() ? "" : " ") + f;
      }
      append_cell(out, files, "mono");
      out += "</tr>";
    }
    out += "</tbody></table></div>";
  }
  out += "</section>\n";
}

void append_overview(std::string& out, const status_snapshot& s) {
  out += "<div class=\"scroll\"><table id=\"overview\"><caption>Tenant domains at a "
         "glance</caption><thead><tr><th scope=\"col\">Domain</th><th scope=\"col\">Mode</th>"
         "<th scope=\"col\">State</th></tr></thead><tbody>";
  for (const auto& d : s.domains) {
    const auto level = level_name(state_level(d));
    out += "<tr class=\"domain-summary\" data-domain=\"";
    append_text(out, d.domain);
    out += "\"><td class=\"mono\"><a href=\"";
    append_text(out, fragment_of(domain_id(d.domain)));
    out += "\">";
    append_text(out, d.domain);
    out += "</a></td>";
    append_cell(out, d.mode);
    out += "<td class=\"level ";
    out += level;
    out += "\">";
    append_text(out, state_hint(d, s.now));
    out += "</td></tr>";
  }
  out += "</tbody></table></div>\n";
}

std::string_view status_class(unsigned status) {
  if (status >= 200 && status < 300) {
    return "num status-2xx";
  }
  if (status >= 300 && status < 400) {
    return "num status-3xx";
  }
  if (status >= 400 && status < 500) {
    return "num status-4xx";
  }
  if (status >= 500) {
    return "num status-5xx";
  }
  return "num";
}

// User-Agents are capped on the page (the JSON has them as the event store keeps them, at most
// event_store::max_user_agent_bytes): a row should stay readable.
constexpr std::size_t user_agent_display_bytes = 200;

void append_event_row(std::string& out, const validation::event& e, bool show_host) {
  out += "<tr class=\"event\"><td class=\"time\">";
  if (known(e.time)) {
    out += "<time datetime=\"";
    out += core::iso8601_millis(e.time);
    out += "\">";
    out += strftime_utc(e.time, "%Y-%m-%d %H:%M:%S");
    out += "</time>";
  } else {
    append_none(out, "—");
  }
  out += "</td>";
  if (show_host) {
    append_cell(out, e.domain, "mono host");
  }
  append_cell(out, e.client, "mono client");
  append_cell(out, e.user_agent, "user-agent", user_agent_display_bytes);
  append_cell(out, e.file, "mono file");
  append_cell(out, e.action, "action");
  out += "<td class=\"";
  out += status_class(e.status);
  out += "\">";
  if (e.status == 0) {
    append_none(out, "none");
  } else {
    out += std::to_string(e.status);
  }
  out += "</td>";
  if (!e.location.empty()) {
    out += "<td class=\"mono upstream\">→ ";
    append_text(out, e.location);
    out += "</td>";
  } else {
    append_cell(out, e.upstream, "mono upstream");
  }
  char latency[32];
  std::snprintf(latency, sizeof latency, "%.1f", e.latency_ms);
  out += "<td class=\"num latency\">";
  out += latency;
  out += "</td>";
  append_cell(out, e.error, "error-text");
  out += "</tr>";
}

// How many of each domain's events (its newest) the page and the JSON show: see
// max_events_shown.
std::vector<std::size_t> events_shown(const status_snapshot& s) {
  std::vector<std::size_t> shown;
  shown.reserve(s.domains.size());
  std::size_t budget = max_events_shown;
  for (const auto& d : s.domains) {
    const auto n = std::min({d.events.size(), max_events_per_domain_shown, budget});
    shown.push_back(n);
    budget -= n;
  }
  return shown;
}

void append_domain(std::string& out, const status_snapshot::domain_state& d, std::size_t shown,
                   sys_clock::time_point now) {
  const auto level = level_name(state_level(d));
  out += "<section class=\"domain\" id=\"";
  append_text(out, domain_id(d.domain));
  out += "\" data-domain=\"";
  append_text(out, d.domain);
  out += "\" data-hint=\"";
  out += level;
  out += "\"><h3>";
  append_text(out, d.domain);
  out += "</h3><dl class=\"facts\"><dt>Mode</dt><dd class=\"mode\">";
  if (d.mode.empty()) {
    append_none(out, "unknown");
  } else {
    append_text(out, d.mode);
  }
  out += "</dd><dt>Tokens</dt><dd class=\"tokens\">";
  if (d.token_files.empty()) {
    append_none(out, "none configured");
  } else {
    out += "<ul class=\"plain\">";
    for (const auto& t : d.token_files) {
      out += "<li><code>";
      append_text(out, t);
      out += "</code></li>";
    }
    out += "</ul>";
  }
  out += "</dd></dl><p class=\"hint ";
  out += level;
  out += "\">";
  append_text(out, state_hint(d, now));
  out += " <span class=\"help\">(what to do: ";
  append_text(out, hint_help(d));
  out += ")</span></p>";
  const std::size_t omitted = d.events.size() - shown;
  if (omitted > 0) {
    out += "<p class=\"omitted\">";
    out += std::to_string(omitted);
    out += omitted == 1 ? " older request" : " older requests";
    out += " not shown (the validation event log has every request)</p>";
  }
  if (shown == 0) {
    out += "</section>\n";
    return;
  }
  // A wildcard collects several host names: say which one each request was for.
  const bool show_host = d.domain.starts_with("*.");
  out += "<div class=\"scroll\"><table class=\"events\"><caption>Last validation requests for ";
  append_text(out, d.domain);
  out += ", newest first</caption><thead><tr><th scope=\"col\">Time (UTC)</th>";
  if (show_host) {
    out += "<th scope=\"col\">Host</th>";
  }
  out += "<th scope=\"col\">Client</th><th scope=\"col\">User-Agent</th>"
         "<th scope=\"col\">File</th><th scope=\"col\">Action</th><th scope=\"col\">Status</th>"
         "<th scope=\"col\">Upstream / Location</th><th scope=\"col\">Latency (ms)</th>"
         "<th scope=\"col\">Error</th></tr></thead><tbody>";
  for (auto it = d.events.rbegin(); it != d.events.rbegin() + static_cast<std::ptrdiff_t>(shown);
       ++it) {
    append_event_row(out, *it, show_host);
  }
  out += "</tbody></table></div></section>\n";
}

// ---------------------------------------------------------------------------------------------
// JSON.

json::value time_value(sys_clock::time_point t) {
  if (!known(t)) {
    return nullptr;
  }
  return json::value(core::iso8601_millis(t));
}

json::array string_array(const std::vector<std::string>& v) {
  json::array a;
  a.reserve(v.size());
  for (const auto& s : v) {
    a.emplace_back(clean(s));
  }
  return a;
}

json::object event_json(const validation::event& e) {
  json::object o;
  o["time"] = time_value(e.time);
  o["client"] = clean(e.client);
  o["user_agent"] = clean(e.user_agent);
  o["domain"] = clean(e.domain);
  o["file"] = clean(e.file);
  o["mode"] = clean(e.mode);
  o["action"] = clean(e.action);
  o["status"] = e.status;
  o["upstream"] = clean(e.upstream);
  o["location"] = clean(e.location);
  o["latency_ms"] = e.latency_ms;
  o["error"] = clean(e.error);
  return o;
}

}  // namespace

std::string state_hint(const status_snapshot::domain_state& d, sys_clock::time_point now) {
  if (d.events.empty()) {
    std::string out = "no validation request seen yet";
    if (d.mode == "forward") {
      out += ", the CA has not reached this domain through wkproxy";
    }
    return out;
  }
  const auto& e = d.events.back();
  switch (classify(e)) {
  case hint_case::origin:
    return "the last request under the prefix was not a known token and went to the origin";
  case hint_case::unreachable:
    return unreachable_hint(e, now);
  case hint_case::redirected:
    return "redirected to ACM at " + hint_time(e.time, now);
  case hint_case::answered:
    return "answered 200 at " + hint_time(e.time, now) + " — the CA got the token";
  case hint_case::cf_421:
    return "last answer was 421 from CloudFront — check SNI/Host (use plain http:// for "
           "cloudfront, or the right connection group)";
  case hint_case::cf_403:
    return "last answer was 403 from CloudFront — the domain is probably not attached to a "
           "distribution tenant yet";
  case hint_case::not_found:
    return not_found_hint(e);
  case hint_case::other:
    break;
  }
  return other_hint(e, now);
}

std::string hint_help(const status_snapshot::domain_state& d) {
  constexpr std::string_view guide = "docs/onboarding.md#";
  if (d.events.empty()) {
    return std::string(guide) + "ts-hint-no-request";
  }
  const auto& e = d.events.back();
  std::string_view anchor = "ts-hint-other-status";
  switch (classify(e)) {
  case hint_case::origin:
    anchor = "ts-hint-origin";
    break;
  case hint_case::unreachable:
    anchor = "ts-hint-unreachable";
    break;
  case hint_case::redirected:
    anchor = "ts-hint-redirected";
    break;
  case hint_case::answered:
    anchor = "ts-hint-answered";
    break;
  case hint_case::cf_421:
    anchor = "ts-hint-421";
    break;
  case hint_case::cf_403:
    anchor = "ts-hint-403";
    break;
  case hint_case::not_found:
    anchor = e.action == "fetch"       ? "ts-hint-404-fetch"
             : e.action == "static"    ? "ts-hint-404-static"
             : e.action == "not_found" ? "ts-hint-404-not-found"
                                       : "ts-hint-404-forward";
    break;
  case hint_case::other:
    anchor = e.status == 0 ? "ts-hint-no-answer" : "ts-hint-other-status";
    break;
  }
  return std::string(guide) + std::string(anchor);
}

hint_level state_level(const status_snapshot::domain_state& d) {
  if (d.events.empty()) {
    return hint_level::none;
  }
  const auto& e = d.events.back();
  return level_of(classify(e), &e);
}

std::string render_status_html(const status_snapshot& s) {
  std::string out;
  out.reserve(std::size_t{16} * 1024);
  out += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
         "<meta http-equiv=\"refresh\" content=\"5\">"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
         "<title>wkproxy status</title><style>";
  out += style;
  out += "</style></head>\n<body><header><h1>wkproxy status</h1><p class=\"meta\">";
  if (!s.version.empty()) {
    out += "wkproxy ";
    append_text(out, s.version);
    out += " · ";
  }
  out += "generated ";
  append_time_element(out, s.now);
  out += " · refreshes every 5 s</p></header>\n<main>";
  append_process(out, s);
  append_upstreams(out, s);
  append_tenants(out, s);
  out += "<section id=\"domains\" aria-labelledby=\"domains-title\">"
         "<h2 id=\"domains-title\">Tenant domains</h2>";
  if (s.domains.empty()) {
    out += "<p class=\"absent\">No tenant domain configured.</p>";
  } else {
    append_overview(out, s);
    const auto shown = events_shown(s);
    for (std::size_t i = 0; i < s.domains.size(); ++i) {
      append_domain(out, s.domains[i], shown[i], s.now);
    }
  }
  out += "</section></main></body></html>\n";
  return out;
}

std::string render_status_json(const status_snapshot& s) {
  json::object process;
  process["version"] = clean(s.version);
  process["started"] = time_value(s.started);
  if (known(s.started)) {
    process["uptime_s"] = uptime(s).count() < 0 ? 0 : uptime(s).count();
  } else {
    process["uptime_s"] = nullptr;
  }
  process["config_file"] = clean(s.config_file);
  process["config_loaded"] = time_value(s.config_loaded);
  process["listeners"] = string_array(s.listeners);
  process["ready"] = s.ready;
  process["draining"] = s.draining;

  json::array upstreams;
  for (const auto& u : s.upstreams) {
    json::object o;
    o["name"] = clean(u.name);
    o["url"] = clean(u.url);
    o["addresses"] = string_array(u.addresses);
    o["last_error"] = clean(u.last_error);
    o["errors"] = u.errors;
    upstreams.emplace_back(std::move(o));
  }

  json::array domains;
  const auto shown = events_shown(s);
  for (std::size_t i = 0; i < s.domains.size(); ++i) {
    const auto& d = s.domains[i];
    json::object o;
    o["domain"] = clean(d.domain);
    o["mode"] = clean(d.mode);
    o["tokens"] = string_array(d.token_files);
    o["hint"] = clean(state_hint(d, s.now));
    o["hint_level"] = level_name(state_level(d));
    o["help"] = hint_help(d);
    json::array events;
    events.reserve(shown[i]);
    for (auto it = d.events.rbegin();
         it != d.events.rbegin() + static_cast<std::ptrdiff_t>(shown[i]); ++it) {
      events.emplace_back(event_json(*it));
    }
    o["events"] = std::move(events);
    o["events_omitted"] = d.events.size() - shown[i];
    domains.emplace_back(std::move(o));
  }

  json::array tenants;
  for (const auto& t : s.tenants) {
    json::object o;
    o["tenant"] = clean(t.tenant);
    o["name"] = clean(t.name);
    o["certificate_status"] = clean(t.certificate_status);
    o["validation_token_host"] = clean(t.token_host);
    o["routing_endpoint"] = clean(t.routing_endpoint);
    o["last_success"] = time_value(t.last_success);
    o["last_error"] = clean(t.last_error);
    json::array ds;
    for (const auto& d : t.domains) {
      json::object x;
      x["domain"] = clean(d.domain);
      x["stage"] = clean(d.stage);
      x["state"] = clean(d.sentence);
      x["dns_record"] = clean(d.dns_record);
      x["dns_status"] = clean(d.dns_status);
      x["dns_reason"] = clean(d.dns_reason);
      x["tokens"] = string_array(d.token_files);
      x["last_fetch"] = time_value(d.last_fetch);
      x["last_fetch_status"] = d.last_fetch_status;
      x["last_request"] = time_value(d.last_request);
      ds.emplace_back(std::move(x));
    }
    o["domains"] = std::move(ds);
    tenants.emplace_back(std::move(o));
  }

  json::object root;
  root["generated"] = time_value(s.now);
  if (!s.credentials_source.empty() || !s.tenants.empty()) {
    root["credentials"] = clean(s.credentials_source);
    root["tenants"] = std::move(tenants);
  }
  root["process"] = std::move(process);
  root["upstreams"] = std::move(upstreams);
  root["domains"] = std::move(domains);
  return json::serialize(root);
}

}  // namespace wk::app
