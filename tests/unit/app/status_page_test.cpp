#include "app/status_page.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace json = boost::json;
using wk::app::hint_level;
using wk::app::render_status_html;
using wk::app::render_status_json;
using wk::app::state_hint;
using wk::app::state_level;
using wk::app::status_snapshot;
using wk::validation::event;
using namespace std::chrono_literals;

namespace {

using time_point = std::chrono::system_clock::time_point;

// 2024-05-01 at the given UTC time of day.
time_point may_first(std::chrono::seconds time_of_day) {
  return std::chrono::sys_days{std::chrono::year{2024} / 5 / 1} + time_of_day;
}

const time_point now = may_first(15h);
const time_point at_1403 = may_first(14h + 3min + 7s);

event make_event(std::string mode, std::string action, unsigned status, std::string upstream = {},
                 std::string error = {}, time_point t = at_1403) {
  event e;
  e.time = t;
  e.client = "203.0.113.7:51234";
  e.user_agent = "Mozilla/5.0 (compatible; Let's Encrypt validation server)";
  e.domain = "example.com";
  e.file = "aaa.txt";
  e.mode = std::move(mode);
  e.action = std::move(action);
  e.status = status;
  e.upstream = std::move(upstream);
  e.error = std::move(error);
  e.latency_ms = 12.5;
  return e;
}

status_snapshot::domain_state domain_with(std::string mode, std::vector<event> events = {}) {
  status_snapshot::domain_state d;
  d.domain = "example.com";
  d.mode = std::move(mode);
  d.token_files = {"aaa.txt"};
  d.events = std::move(events);
  return d;
}

std::size_t count(std::string_view haystack, std::string_view needle) {
  std::size_t n = 0;
  for (auto pos = haystack.find(needle); pos != std::string_view::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

// Cheap well-formedness: every container the page opens, it closes.
void check_balanced(const std::string& html) {
  struct tag_pair {
    std::string_view open, close;
  };
  static constexpr tag_pair pairs[] = {
      {"<section", "</section>"}, {"<table", "</table>"}, {"<tr", "</tr>"}, {"<td", "</td>"},
      {"<ul", "</ul>"},           {"<dl", "</dl>"},       {"<p ", "</p>"},  {"<html", "</html>"},
      {"<head>", "</head>"},      {"<body>", "</body>"}};
  for (const auto& t : pairs) {
    INFO(std::string(t.open));
    CHECK(count(html, t.open) == count(html, t.close));
  }
}

// The text of the domain section for `domain` (up to its closing tag).
std::string section_of(const std::string& html, std::string_view domain) {
  const auto start =
      html.find("<section class=\"domain\" id=\"domain-" + std::string(domain) + "\"");
  REQUIRE(start != std::string::npos);
  const auto end = html.find("</section>", start);
  REQUIRE(end != std::string::npos);
  return html.substr(start, end - start);
}

status_snapshot full_snapshot() {
  status_snapshot s;
  s.version = "0.4.0 (abc1234)";
  s.now = now;
  s.started = now - (26h + 4min + 5s);
  s.config_loaded = may_first(9h);
  s.config_file = "/etc/wkproxy/wkproxy.yaml";
  s.listeners = {"0.0.0.0:80 http", "0.0.0.0:443 passthrough"};
  s.upstreams = {
      {"origin", "http://10.0.0.5:8080", {"10.0.0.5:8080"}, "", 0},
      {"cloudfront",
       "http://d111111abcdef8.cloudfront.net",
       {"192.0.2.10:80", "192.0.2.11:80"},
       "upstream_timeout",
       3},
  };
  auto d = domain_with("forward");
  d.token_files = {"aaa.txt", "bbb.txt"};
  auto older = make_event("forward", "forward", 404, "cloudfront", "", may_first(13h));
  older.file = "older.txt";
  auto newer = make_event("forward", "forward", 200, "cloudfront");
  newer.file = "newer.txt";
  d.events = {older, newer};
  s.domains.push_back(d);

  auto r = domain_with("redirect");
  r.domain = "www.example.com";
  auto redirect = make_event("redirect", "redirect", 301);
  redirect.domain = "www.example.com";
  redirect.location =
      "https://validation.us-east-1.acm-validations.aws/123/.well-known/pki-validation/aaa.txt";
  r.events = {redirect};
  s.domains.push_back(r);

  s.domains.push_back(domain_with("fetch"));
  s.domains.back().domain = "shop.example";
  return s;
}

}  // namespace

TEST_CASE("the state hint follows the newest event of the domain") {
  struct row {
    const char* name;
    event e;
    std::string hint;
    hint_level level;
  };
  const std::string cf_421 = "last answer was 421 from CloudFront — check SNI/Host (use plain "
                             "http:// for cloudfront, or the right connection group)";
  const std::string cf_403 = "last answer was 403 from CloudFront — the domain is probably not "
                             "attached to a distribution tenant yet";
  const std::string origin =
      "the last request under the prefix was not a known token and went to the origin";
  const std::string answered = "answered 200 at 14:03 UTC — the CA got the token";
  const std::vector<row> rows = {
      {"forward 200", make_event("forward", "forward", 200, "cloudfront"), answered,
       hint_level::ok},
      {"fetch 200", make_event("fetch", "fetch", 200, "validation.us-east-1.acm-validations.aws"),
       answered, hint_level::ok},
      {"static 200", make_event("static", "static", 200), answered, hint_level::ok},
      {"redirect 301", make_event("redirect", "redirect", 301), "redirected to ACM at 14:03 UTC",
       hint_level::ok},
      {"redirect 302", make_event("redirect", "redirect", 302), "redirected to ACM at 14:03 UTC",
       hint_level::ok},
      {"redirect 307", make_event("redirect", "redirect", 307), "redirected to ACM at 14:03 UTC",
       hint_level::ok},
      {"redirect 308", make_event("redirect", "redirect", 308), "redirected to ACM at 14:03 UTC",
       hint_level::ok},
      {"421 from CloudFront", make_event("forward", "forward", 421, "cloudfront"), cf_421,
       hint_level::error},
      {"403 from CloudFront", make_event("forward", "forward", 403, "cloudfront"), cf_403,
       hint_level::error},
      {"404 from CloudFront", make_event("forward", "forward", 404, "cloudfront"),
       "last answer was 404 — CloudFront or the origin does not know this token; check the "
       "tokens / RedirectFrom",
       hint_level::error},
      {"404 from ACM in fetch mode",
       make_event("fetch", "fetch", 404, "validation.us-east-1.acm-validations.aws"),
       "last answer was 404 from validation.us-east-1.acm-validations.aws — ACM does not know "
       "this token; check the tokens / RedirectTo",
       hint_level::error},
      {"404 from the static folder", make_event("static", "static", 404),
       "last answer was 404 — wkproxy has no file for this token; check the tokens / static_dir",
       hint_level::error},
      {"404 for an unknown token", make_event("redirect", "not_found", 404),
       "last answer was 404 from wkproxy — the file is not a token of this domain "
       "(unknown_token: not_found); check the tokens / RedirectFrom",
       hint_level::error},
      {"502 with an upstream error",
       make_event("forward", "forward", 502, "cloudfront", "upstream_refused"),
       "could not reach cloudfront: upstream_refused at 14:03 UTC", hint_level::error},
      {"504 with an upstream error",
       make_event("forward", "forward", 504, "cloudfront", "upstream_timeout"),
       "could not reach cloudfront: upstream_timeout at 14:03 UTC", hint_level::error},
      {"fetch host unreachable",
       make_event("fetch", "fetch", 502, "validation.us-east-1.acm-validations.aws",
                  "upstream_tls"),
       "could not reach validation.us-east-1.acm-validations.aws: upstream_tls at 14:03 UTC",
       hint_level::error},
      {"502 answered by the upstream itself", make_event("forward", "forward", 502, "cloudfront"),
       "could not reach cloudfront: status 502 at 14:03 UTC", hint_level::error},
      {"upstream error without an upstream name",
       make_event("forward", "forward", 502, "", "upstream_unresolved"),
       "could not reach cloudfront: upstream_unresolved at 14:03 UTC", hint_level::error},
      {"not a known token", make_event("forward", "origin", 200, "origin"), origin,
       hint_level::warning},
      {"not a known token, origin down",
       make_event("forward", "origin", 502, "origin", "upstream_refused"), origin,
       hint_level::warning},
      {"anything else", make_event("forward", "forward", 500, "cloudfront"),
       "last answer was 500 at 14:03 UTC", hint_level::warning},
      {"a redirect from CloudFront is not ACM's",
       make_event("forward", "forward", 301, "cloudfront"), "last answer was 301 at 14:03 UTC",
       hint_level::ok},
      {"no answer sent", make_event("forward", "forward", 0, "cloudfront", "client_gone"),
       "last request got no answer (client_gone) at 14:03 UTC", hint_level::warning},
      {"200 cut short", make_event("forward", "forward", 200, "cloudfront", "client_gone"),
       "last answer was 200 at 14:03 UTC (client_gone)", hint_level::warning},
      {"an event from another day",
       make_event("forward", "forward", 200, "cloudfront", "", may_first(-1min)),
       "answered 200 at 2024-04-30 23:59 UTC — the CA got the token", hint_level::ok},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    const auto d = domain_with(r.e.mode, {r.e});
    CHECK(state_hint(d, now) == r.hint);
    CHECK(state_level(d) == r.level);
  }
}

TEST_CASE("a domain without events says no request was seen") {
  SUBCASE("forward mode adds that the CA has not come through wkproxy") {
    CHECK(state_hint(domain_with("forward"), now) ==
          "no validation request seen yet, the CA has not reached this domain through wkproxy");
  }
  SUBCASE("other modes say only that") {
    for (const char* mode : {"redirect", "fetch", "static"}) {
      INFO(mode);
      CHECK(state_hint(domain_with(mode), now) == "no validation request seen yet");
    }
  }
  CHECK(state_level(domain_with("forward")) == hint_level::none);
}

TEST_CASE("only the newest (last) event decides the hint") {
  const auto ok = make_event("forward", "forward", 200, "cloudfront");
  const auto bad = make_event("forward", "forward", 421, "cloudfront");
  CHECK(state_hint(domain_with("forward", {bad, ok}), now).starts_with("answered 200"));
  CHECK(state_hint(domain_with("forward", {ok, bad}), now).starts_with("last answer was 421"));
}

TEST_CASE("the page is one self-contained, auto-refreshing HTML5 document") {
  const auto html = render_status_html(full_snapshot());
  CHECK(html.starts_with("<!DOCTYPE html>"));
  CHECK(html.find("<title>wkproxy status</title>") != std::string::npos);
  CHECK(html.find("<meta http-equiv=\"refresh\" content=\"5\">") != std::string::npos);
  CHECK(html.find("<meta charset=\"utf-8\">") != std::string::npos);
  CHECK(html.find("<style>") != std::string::npos);
  // Nothing fetched from elsewhere, no script.
  CHECK(count(html, "<script") == 0);
  CHECK(count(html, "<link") == 0);
  CHECK(count(html, " src=") == 0);
  CHECK(count(html, "url(") == 0);
  check_balanced(html);
}

TEST_CASE("the page shows the process and the upstreams") {
  const auto html = render_status_html(full_snapshot());
  CHECK(html.find("<section id=\"process\"") != std::string::npos);
  CHECK(html.find("<dd id=\"version\">0.4.0 (abc1234)</dd>") != std::string::npos);
  CHECK(html.find("<dd id=\"uptime\">1d 02h 04m 05s") != std::string::npos);
  CHECK(html.find("/etc/wkproxy/wkproxy.yaml") != std::string::npos);
  CHECK(html.find("2024-05-01 09:00:00 UTC") != std::string::npos);  // config loaded
  CHECK(html.find("0.0.0.0:443 passthrough") != std::string::npos);
  CHECK(html.find("<dd id=\"state\" class=\"state ready\">") != std::string::npos);
  CHECK(html.find("<tr class=\"upstream\" data-upstream=\"origin\">") != std::string::npos);
  CHECK(html.find("<tr class=\"upstream\" data-upstream=\"cloudfront\">") != std::string::npos);
  CHECK(html.find("192.0.2.10:80<br>192.0.2.11:80") != std::string::npos);
  CHECK(html.find("upstream_timeout") != std::string::npos);

  SUBCASE("draining wins over ready") {
    auto s = full_snapshot();
    s.draining = true;
    CHECK(render_status_html(s).find("class=\"state draining\"") != std::string::npos);
  }
  SUBCASE("not ready") {
    auto s = full_snapshot();
    s.ready = false;
    CHECK(render_status_html(s).find("class=\"state not-ready\"") != std::string::npos);
  }
}

TEST_CASE("each domain has its section with mode, tokens, hint and events newest first") {
  const auto s = full_snapshot();
  const auto html = render_status_html(s);
  CHECK(count(html, "<section class=\"domain\"") == 3);
  for (const auto& d : s.domains) {
    INFO(d.domain);
    CHECK(html.find("data-domain=\"" + d.domain + "\"") != std::string::npos);
    const auto sec = section_of(html, d.domain);
    CHECK(sec.find("<dd class=\"mode\">" + d.mode + "</dd>") != std::string::npos);
    CHECK(count(sec, "<p class=\"hint ") == 1);
    CHECK(count(sec, "<tr class=\"event\">") == d.events.size());
  }

  const auto first = section_of(html, "example.com");
  CHECK(first.find("data-hint=\"ok\"") != std::string::npos);
  CHECK(first.find("<p class=\"hint ok\">answered 200 at 14:03 UTC — the CA got the token "
                   "<span class=\"help\">(what to do: docs/onboarding.md#ts-hint-answered)</span>"
                   "</p>") != std::string::npos);
  CHECK(first.find("<code>aaa.txt</code>") != std::string::npos);
  CHECK(first.find("<code>bbb.txt</code>") != std::string::npos);
  CHECK(first.find("newest first") != std::string::npos);
  // The newest event (newer.txt, last in the snapshot) comes first on the page.
  const auto newer = first.find("newer.txt");
  const auto older = first.find("older.txt");
  REQUIRE(newer != std::string::npos);
  REQUIRE(older != std::string::npos);
  CHECK(newer < older);
  CHECK(first.find("<time datetime=\"2024-05-01T14:03:07.000Z\">2024-05-01 14:03:07</time>") !=
        std::string::npos);
  CHECK(first.find("203.0.113.7:51234") != std::string::npos);
  CHECK(first.find("12.5") != std::string::npos);

  const auto www = section_of(html, "www.example.com");
  CHECK(www.find("→ https://validation.us-east-1.acm-validations.aws/123/") != std::string::npos);

  const auto shop = section_of(html, "shop.example");
  CHECK(shop.find("<p class=\"hint none\">no validation request seen yet <span class=\"help\">"
                  "(what to do: docs/onboarding.md#ts-hint-no-request)</span></p>") !=
        std::string::npos);
  CHECK(shop.find("<table class=\"events\">") == std::string::npos);

  // The overview links to each section.
  CHECK(html.find("<a href=\"#domain-www.example.com\">") != std::string::npos);
}

TEST_CASE("a wildcard domain's events say which host they were for") {
  auto s = full_snapshot();
  s.domains.resize(1);
  s.domains[0].domain = "*.example.com";
  s.domains[0].events[1].domain = "a.example.com";
  const auto html = render_status_html(s);
  const auto sec = section_of(html, "*.example.com");
  CHECK(sec.find("<th scope=\"col\">Host</th>") != std::string::npos);
  CHECK(sec.find("a.example.com") != std::string::npos);
  CHECK(html.find("<a href=\"#domain-*.example.com\">") != std::string::npos);
  check_balanced(html);
}

TEST_CASE("every dynamic string is escaped, nothing from an event reaches the page raw") {
  auto s = full_snapshot();
  auto& e = s.domains[0].events.back();
  e.user_agent = "<script>alert(\"x\")</script>";
  e.client = "1.2.3.4:5 & 'co'";
  e.file = "<b>.txt";
  e.error = "upstream_<i>";
  e.upstream = "\"><img onerror=x>";
  s.domains[0].domain = "ex\"ample.com";
  s.version = "<v>";
  s.listeners = {"<l>"};
  s.upstreams[0].last_error = "<e>";
  const auto html = render_status_html(s);
  CHECK(html.find("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") != std::string::npos);
  CHECK(html.find("1.2.3.4:5 &amp; &#39;co&#39;") != std::string::npos);
  CHECK(html.find("data-domain=\"ex&quot;ample.com\"") != std::string::npos);
  for (std::string_view raw : {"<script", "alert(\"x\")", "<b>", "<i>", "<img", "<v>", "<l>", "<e>",
                               "ex\"ample", "'co'"}) {
    INFO(std::string(raw));
    CHECK(html.find(raw) == std::string::npos);
  }
  check_balanced(html);
}

TEST_CASE("invalid UTF-8 and control bytes become U+FFFD on the page and in the JSON") {
  auto s = full_snapshot();
  s.domains[0].events.back().user_agent = "bad\xff\x01ua\xc3\x28 \xe2\x82\xac";
  const std::string expected = "bad\xEF\xBF\xBD\xEF\xBF\xBDua\xEF\xBF\xBD( \xe2\x82\xac";
  CHECK(render_status_html(s).find(expected) != std::string::npos);
  const auto v = json::parse(render_status_json(s));
  CHECK(v.at("domains").at(0).at("events").at(0).at("user_agent").as_string() == expected);
}

TEST_CASE("a long User-Agent is cut on the page and kept whole in the JSON") {
  auto s = full_snapshot();
  const std::string ua(5000, 'a');
  s.domains[0].events.back().user_agent = ua;
  const auto html = render_status_html(s);
  CHECK(html.find(ua) == std::string::npos);
  CHECK(html.find(std::string(200, 'a') + "…") != std::string::npos);
  const auto v = json::parse(render_status_json(s));
  CHECK(v.at("domains").at(0).at("events").at(0).at("user_agent").as_string() == ua);
}

TEST_CASE("the JSON is valid and mirrors the page") {
  const auto s = full_snapshot();
  const auto v = json::parse(render_status_json(s));
  REQUIRE(v.is_object());
  CHECK(v.at("generated").as_string() == "2024-05-01T15:00:00.000Z");

  const auto& p = v.at("process");
  CHECK(p.at("version").as_string() == "0.4.0 (abc1234)");
  CHECK(p.at("uptime_s").to_number<std::int64_t>() == 26 * 3600 + 4 * 60 + 5);
  CHECK(p.at("config_file").as_string() == "/etc/wkproxy/wkproxy.yaml");
  CHECK(p.at("config_loaded").as_string() == "2024-05-01T09:00:00.000Z");
  CHECK(p.at("listeners").as_array().size() == 2);
  CHECK(p.at("ready").as_bool());
  CHECK_FALSE(p.at("draining").as_bool());

  const auto& ups = v.at("upstreams").as_array();
  REQUIRE(ups.size() == 2);
  CHECK(ups[1].at("name").as_string() == "cloudfront");
  CHECK(ups[1].at("url").as_string() == "http://d111111abcdef8.cloudfront.net");
  CHECK(ups[1].at("addresses").as_array().size() == 2);
  CHECK(ups[1].at("last_error").as_string() == "upstream_timeout");
  CHECK(ups[1].at("errors").to_number<std::uint64_t>() == 3);

  const auto& doms = v.at("domains").as_array();
  REQUIRE(doms.size() == 3);
  for (std::size_t i = 0; i < doms.size(); ++i) {
    INFO(s.domains[i].domain);
    CHECK(doms[i].at("domain").as_string() == s.domains[i].domain);
    CHECK(doms[i].at("mode").as_string() == s.domains[i].mode);
    CHECK(doms[i].at("hint").as_string() == state_hint(s.domains[i], now));
    CHECK(doms[i].at("tokens").as_array().size() == s.domains[i].token_files.size());
    CHECK(doms[i].at("events").as_array().size() == s.domains[i].events.size());
  }
  CHECK(doms[0].at("hint_level").as_string() == "ok");
  CHECK(doms[2].at("hint_level").as_string() == "none");
  CHECK(doms[0].at("help").as_string() == "docs/onboarding.md#ts-hint-answered");
  CHECK(doms[2].at("help").as_string() == "docs/onboarding.md#ts-hint-no-request");

  const auto& events = doms[0].at("events").as_array();
  const auto& newest = events[0];  // newest first, like the page
  CHECK(newest.at("file").as_string() == "newer.txt");
  CHECK(events[1].at("file").as_string() == "older.txt");
  for (const char* field : {"time", "client", "user_agent", "domain", "file", "mode", "action",
                            "status", "upstream", "location", "latency_ms", "error"}) {
    INFO(field);
    CHECK(newest.as_object().contains(field));
  }
  CHECK(newest.at("time").as_string() == "2024-05-01T14:03:07.000Z");
  CHECK(newest.at("status").to_number<unsigned>() == 200);
  CHECK(newest.at("latency_ms").to_number<double>() == doctest::Approx(12.5));
  CHECK(doms[1].at("events").at(0).at("location").as_string().starts_with("https://validation."));
}

TEST_CASE("an empty snapshot renders a valid page and valid JSON") {
  const status_snapshot s;
  const auto html = render_status_html(s);
  CHECK(html.starts_with("<!DOCTYPE html>"));
  CHECK(html.find("<title>wkproxy status</title>") != std::string::npos);
  CHECK(html.find("No tenant domain configured.") != std::string::npos);
  CHECK(html.find("no upstream") != std::string::npos);
  CHECK(html.find("<section class=\"domain\"") == std::string::npos);
  CHECK(html.ends_with("</html>\n"));
  check_balanced(html);

  const auto v = json::parse(render_status_json(s));
  CHECK(v.at("process").at("started").is_null());
  CHECK(v.at("process").at("uptime_s").is_null());
  CHECK(v.at("process").at("config_loaded").is_null());
  CHECK(v.at("upstreams").as_array().empty());
  CHECK(v.at("domains").as_array().empty());
}

TEST_CASE("the page and the JSON show a bounded number of events, the newest") {
  auto s = full_snapshot();
  s.domains.resize(1);
  s.domains[0].domain = "*.example.com";
  const auto one = s.domains[0].events.back();
  s.domains[0].events.clear();
  // More than a section shows, then sections enough to exhaust the total budget.
  for (std::size_t i = 0; i < wk::app::max_events_per_domain_shown + 20; ++i) {
    auto e = one;
    e.file = "f" + std::to_string(i) + ".txt";
    s.domains[0].events.push_back(e);
  }
  const std::size_t sections = wk::app::max_events_shown / 100 + 3;
  for (std::size_t k = 1; k < sections; ++k) {
    auto d = s.domains[0];
    d.domain = "d" + std::to_string(k) + ".example";
    s.domains.push_back(d);
  }
  const auto html = render_status_html(s);
  check_balanced(html);
  CHECK(count(html, "<tr class=\"event\">") == wk::app::max_events_shown);
  const auto first = section_of(html, "*.example.com");
  CHECK(count(first, "<tr class=\"event\">") == wk::app::max_events_per_domain_shown);
  CHECK(first.find(">f119.txt<") != std::string::npos);  // the newest ones
  CHECK(first.find(">f20.txt<") != std::string::npos);
  CHECK(first.find(">f19.txt<") == std::string::npos);
  CHECK(first.find(">f0.txt<") == std::string::npos);
  CHECK(first.find("<p class=\"omitted\">20 older requests not shown") != std::string::npos);
  // Past the budget a section keeps its hint, without rows.
  const auto last = section_of(html, "d" + std::to_string(sections - 1) + ".example");
  CHECK(last.find("<p class=\"hint ok\">answered 200") != std::string::npos);
  CHECK(count(last, "<tr class=\"event\">") == 0);
  CHECK(last.find("120 older requests not shown") != std::string::npos);

  const auto v = json::parse(render_status_json(s));
  std::size_t shown = 0;
  for (const auto& d : v.at("domains").as_array()) {
    const auto n = d.at("events").as_array().size();
    CHECK(n <= wk::app::max_events_per_domain_shown);
    CHECK(n + d.at("events_omitted").to_number<std::size_t>() ==
          wk::app::max_events_per_domain_shown + 20);
    shown += n;
  }
  CHECK(shown == wk::app::max_events_shown);
  CHECK(v.at("domains").at(0).at("events").at(0).at("file").as_string() == "f119.txt");
  CHECK(v.at("domains").at(0).at("events_omitted").to_number<std::size_t>() == 20);
}
