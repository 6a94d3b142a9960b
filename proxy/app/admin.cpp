#include "app/admin.hpp"
#include "app/tenants.hpp"

#include "app/status_page.hpp"
#include "core/asio.hpp"
#include "core/endpoint.hpp"
#include "net/listener.hpp"
#include "observe/counters.hpp"
#include "observe/log.hpp"
#include "validation/events.hpp"
#include "validation/plan.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/address_v6.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/serialize.hpp>

#include <openssl/crypto.h>

#include <algorithm>
#include <chrono>
#include <list>
#include <memory>

namespace wk::app {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace {

std::string_view name_of(config::proxy_protocol p) {
  switch (p) {
  case config::proxy_protocol::off:
    return "off";
  case config::proxy_protocol::v1:
    return "v1";
  case config::proxy_protocol::v2:
    return "v2";
  }
  return "off";
}

std::string_view name_of(config::forwarded_policy p) {
  switch (p) {
  case config::forwarded_policy::off:
    return "off";
  case config::forwarded_policy::append:
    return "append";
  case config::forwarded_policy::replace:
    return "replace";
  }
  return "append";
}

json::object upstream_json(const config::upstream& u) {
  json::object o;
  o["url"] = u.url;
  o["host"] = u.host;
  o["port"] = u.port;
  if (u.tls) {
    o["sni"] = u.sni;
    o["verify"] = u.verify;
    o["ca_file"] = u.ca_file;
  }
  o["send_proxy_protocol"] = name_of(u.send_proxy_protocol);
  return o;
}

json::array strings(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) {
    a.emplace_back(s);
  }
  return a;
}

std::string seconds(config::duration d) {
  return std::to_string(d.count()) + "ms";
}

}  // namespace

json::object config_json(const config::config& cfg) {
  json::object o;
  o["version"] = cfg.version;
  o["file"] = cfg.file;
  json::array listen;
  for (const auto& l : cfg.listen) {
    json::object lj;
    lj["address"] = l.address;
    lj["mode"] = config::name_of(l.mode);
    json::array ranges;
    for (const auto& r : l.accept_proxy_from) {
      ranges.emplace_back(r.text);
    }
    lj["accept_proxy_from"] = std::move(ranges);
    if (l.mode == config::listener_mode::tls) {
      json::array certs;
      for (const auto& c : l.certificates) {
        certs.emplace_back(
            json::object{{"cert", c.cert_file}, {"key", c.key_file}, {"ocsp", c.ocsp_file}});
      }
      lj["certificates"] = std::move(certs);
    }
    if (l.mode == config::listener_mode::passthrough) {
      lj["upstream"] = upstream_json(l.passthrough);
      json::object routes;
      for (const auto& r : l.sni_routes) {
        routes[r.pattern] = upstream_json(r.target);
      }
      lj["sni_routes"] = std::move(routes);
      lj["on_no_sni"] = l.reject_without_sni ? "reject" : "upstream";
    }
    listen.emplace_back(std::move(lj));
  }
  o["listen"] = std::move(listen);
  o["origin"] = upstream_json(cfg.origin);
  o["cloudfront"] = upstream_json(cfg.cloudfront);
  const auto& v = cfg.validation;
  json::object vj;
  vj["prefix"] = v.prefix;
  vj["domains"] = strings(v.domains);
  vj["methods"] = strings(v.methods);
  vj["mode"] = validation::name_of(v.mode);
  json::object modes;
  for (const auto& m : v.modes) {
    modes[m.pattern] = validation::name_of(m.mode);
  }
  vj["modes"] = std::move(modes);
  vj["redirect_status"] = v.redirect_status;
  vj["unknown_token"] =
      v.unknown_token == config::unknown_token_action::origin ? "origin" : "not_found";
  vj["static_dir"] = v.static_dir;
  vj["fetch_ca_file"] = v.fetch_ca_file;
  vj["events_per_domain"] = v.events_per_domain;
  o["validation"] = std::move(vj);
  json::array tokens;
  for (const auto& t : cfg.tokens) {
    tokens.emplace_back(json::object{{"domain", t.domain},
                                     {"tenant", t.tenant},
                                     {"redirect_from", t.redirect_from},
                                     {"redirect_to", t.redirect_to},
                                     {"has_content", t.has_content}});
  }
  o["tokens"] = std::move(tokens);
  const auto& t = cfg.timeouts;
  o["timeouts"] = json::object{{"connect", seconds(t.connect)},
                               {"header_read", seconds(t.header_read)},
                               {"idle", seconds(t.idle)},
                               {"upstream_response", seconds(t.upstream_response)},
                               {"upstream_idle", seconds(t.upstream_idle)},
                               {"body_idle", seconds(t.body_idle)},
                               {"tunnel_idle", seconds(t.tunnel_idle)}};
  const auto& l = cfg.limits;
  o["limits"] = json::object{{"header_bytes", l.header_bytes},
                             {"header_count", l.header_count},
                             {"target_bytes", l.target_bytes},
                             {"max_connections", l.max_connections},
                             {"max_body_bytes", l.max_body_bytes},
                             {"max_requests_per_connection", l.max_requests_per_connection},
                             {"max_pipelined", l.max_pipelined}};
  o["headers"] = json::object{{"x_forwarded_for", name_of(cfg.headers.x_forwarded_for)},
                              {"x_forwarded_proto", name_of(cfg.headers.x_forwarded_proto)}};
  o["dns"] = json::object{{"refresh", seconds(cfg.dns.refresh)}};
  o["shutdown"] = json::object{{"accept_grace", seconds(cfg.shutdown.accept_grace)},
                               {"drain_timeout", seconds(cfg.shutdown.drain_timeout)},
                               {"upgrade_timeout", seconds(cfg.shutdown.upgrade_timeout)}};
  o["admin"] = json::object{{"listen", cfg.admin.address},
                            {"token", cfg.admin.token.empty() ? "" : "(redacted)"}};
  o["workers"] = cfg.workers;
  if (!cfg.pid_file.empty()) {
    o["pid_file"] = cfg.pid_file;
  }
  return o;
}

bool unrebindable_host(std::string_view host) {
  std::string_view name = host;
  std::string_view port;
  if (host.starts_with('[')) {
    const auto close = host.find(']');
    if (close == std::string_view::npos) {
      return false;
    }
    name = host.substr(1, close - 1);
    const auto rest = host.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') {
      return false;
    }
    port = rest.empty() ? rest : rest.substr(1);
  } else if (const auto colon = host.find(':'); colon != std::string_view::npos) {
    name = host.substr(0, colon);
    port = host.substr(colon + 1);
  }
  if (port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  boost::system::error_code ec;
  if (host.starts_with('[')) {
    (void)asio::ip::make_address_v6(name, ec);  // inet_pton: no zone, no junk around
    return !ec && name.find('%') == std::string_view::npos;
  }
  if (boost::beast::iequals(name, "localhost")) {
    return true;
  }
  // inet_pton: exactly four decimal parts, so no "0x7f000001" or "127.1" (and no name).
  (void)asio::ip::make_address_v4(name, ec);
  return !ec;
}

namespace {

using response = bhttp::response<bhttp::string_body>;

response reply(unsigned status, std::string_view content_type, std::string body) {
  response res;
  res.result(status);
  res.version(11);
  res.set(bhttp::field::content_type, content_type);
  res.set(bhttp::field::cache_control, "no-store");
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

bool authorized(const bhttp::request<bhttp::empty_body>& req, const std::string& token) {
  if (token.empty()) {
    return true;
  }
  const std::string expected = "Bearer " + token;
  const auto got = req[bhttp::field::authorization];
  // Constant time: a wrong token's answer takes as long whatever its prefix.
  return got.size() == expected.size() &&
         CRYPTO_memcmp(got.data(), expected.data(), expected.size()) == 0;
}

std::string metrics_text(const admin_context& ctx) {
  observe::scrape_input in;
  in.version = ctx.version;
  in.revision = ctx.revision;
  in.start_time = std::chrono::duration<double>(ctx.started.time_since_epoch()).count();
  const auto workers = ctx.workers();
  in.workers = workers;
  const auto labels = ctx.listener_labels();
  in.listener_labels = labels;
  for (const auto& l : ctx.listeners()) {
    in.open_connections.emplace_back(l.address, l.open);
  }
  in.last_reload_time = std::chrono::duration<double>(ctx.last_reload.time_since_epoch()).count();
  in.last_reload_ok = ctx.last_reload_ok;
  std::string out = observe::prometheus_text(in);
  if (ctx.current()->cfg->aws.enabled && ctx.tenants) {
    out += tenant_metrics(ctx.tenants(), ctx.api_stats ? ctx.api_stats() : nullptr);
  }
  return out;
}

status_snapshot::upstream_state upstream_state(const upstream::target& t, std::string name,
                                               std::uint64_t errors) {
  status_snapshot::upstream_state u;
  u.name = std::move(name);
  u.url = t.cfg.url;
  for (const auto& ep : *t.dns->get()) {
    u.addresses.push_back(core::endpoint_text(ep));
  }
  u.errors = errors;
  return u;
}

status_snapshot status(const admin_context& ctx) {
  const auto rt = ctx.current();
  const auto& cfg = *rt->cfg;
  status_snapshot s;
  s.version = ctx.version + " (" + ctx.revision + ")";
  s.now = std::chrono::system_clock::now();
  s.started = ctx.started;
  s.config_loaded = ctx.config_loaded;
  s.config_file = cfg.file;
  for (const auto& l : ctx.listeners()) {
    s.listeners.push_back(l.address + " " + l.mode);
  }
  s.draining = ctx.draining();
  s.ready = !s.draining;
  const auto workers = ctx.workers();
  const auto errors = [&](observe::upstream_label u) {
    std::uint64_t n = 0;
    for (const auto* w : workers) {
      for (const auto& c : w->upstream_failures[static_cast<std::size_t>(u)]) {
        n += c.get();
      }
    }
    return n;
  };
  s.upstreams.push_back(
      upstream_state(rt->origin, "origin", errors(observe::upstream_label::origin)));
  s.upstreams.push_back(
      upstream_state(rt->cloudfront, "cloudfront", errors(observe::upstream_label::cloudfront)));
  for (const auto& f : rt->fetch_targets) {
    s.upstreams.push_back(upstream_state(f, f.cfg.host, errors(observe::upstream_label::acm)));
  }
  // One section per configured name or pattern, then per token domain not listed yet: the
  // event store's buckets (a pattern's holds the events of the hosts it matches that have no
  // section of their own). How many of them the page shows is capped by the renderer.
  const auto events = validation::events().snapshot();
  for (const auto& name : validation::bucket_names(cfg)) {
    status_snapshot::domain_state d;
    d.domain = name;
    d.mode = std::string(validation::name_of(rt->tokens.mode_for(name)));
    for (const auto& t : cfg.tokens) {
      if (t.domain == name) {
        d.token_files.push_back(t.file);
      }
    }
    if (auto it = events.find(name); it != events.end()) {
      d.events = it->second;
    }
    std::stable_sort(d.events.begin(), d.events.end(),
                     [](const auto& a, const auto& b) { return a.time < b.time; });
    s.domains.push_back(std::move(d));
  }
  if (cfg.aws.enabled && ctx.tenants) {
    s.tenants = ctx.tenants();
    s.credentials_source = ctx.credentials_source ? ctx.credentials_source() : "";
    if (s.credentials_source.empty()) {
      s.credentials_source = "not resolved yet";
    }
  }
  return s;
}

response handle(const bhttp::request<bhttp::empty_body>& req, const admin_context& ctx) {
  if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head) {
    auto res = reply(405, "text/plain; charset=utf-8", "method not allowed\n");
    res.set(bhttp::field::allow, "GET, HEAD");
    return res;
  }
  std::string_view path = req.target();
  path = path.substr(0, path.find('?'));
  if (path == "/healthz") {
    return reply(200, "text/plain; charset=utf-8", "ok\n");
  }
  if (path == "/readyz") {
    return ctx.draining() ? reply(503, "text/plain; charset=utf-8", "draining\n")
                          : reply(200, "text/plain; charset=utf-8", "ready\n");
  }
  const auto rt = ctx.current();
  if (rt->cfg->admin.token.empty() &&
      (req.count(bhttp::field::host) != 1 || !unrebindable_host(req[bhttp::field::host]))) {
    return reply(403, "text/plain; charset=utf-8",
                 "admin: Host not allowed: without admin.token, only an IP address or localhost "
                 "(a defence against DNS rebinding)\n");
  }
  if (!authorized(req, rt->cfg->admin.token)) {
    auto res = reply(401, "text/plain; charset=utf-8", "a bearer token is required\n");
    res.set(bhttp::field::www_authenticate, "Bearer realm=\"wkproxy\"");
    return res;
  }
  if (path == "/metrics") {
    return reply(200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(ctx));
  }
  if (path == "/status") {
    return reply(200, "text/html; charset=utf-8", render_status_html(status(ctx)));
  }
  if (path == "/status.json") {
    return reply(200, "application/json", render_status_json(status(ctx)));
  }
  if (path == "/config") {
    return reply(200, "application/json", json::serialize(config_json(*rt->cfg)) + "\n");
  }
  return reply(404, "text/plain; charset=utf-8", "no such admin endpoint\n");
}

// Admin connections (issue 18, finding 4). The listener is reachable by anything that can
// reach its address (in Kubernetes, the whole cluster network), and its probes decide whether
// the container is restarted, so connections that say nothing must not be able to keep
// /healthz from answering. At most max_admin_connections are open (a scraper gone wild must
// not starve the main thread); at the cap a newcomer is always taken and the connection that
// can best lose its place is closed: the one that has waited longest for a request with
// nothing received, else the longest stalled inside a request head, else the oldest. Timeouts
// are short: a request head must arrive within head_timeout of the connection (or of its first
// byte after a keep-alive wait), a kept-alive connection waits keep_alive_idle for the next.
// Everything here runs on the main thread's io_context: no locks.
constexpr std::size_t max_admin_connections = 64;
constexpr auto head_timeout = std::chrono::seconds(3);
constexpr auto keep_alive_idle = std::chrono::seconds(5);
constexpr auto write_timeout = std::chrono::seconds(10);

struct admin_connection {
  enum class phase {
    waiting,  // for a request, nothing of it received: closed first at the cap
    reading,  // a request head has started arriving
    busy      // answering
  };
  explicit admin_connection(tcp::socket socket) : stream(std::move(socket)) {}
  beast::tcp_stream stream;
  phase state = phase::waiting;
  std::chrono::steady_clock::time_point since = std::chrono::steady_clock::now();  // in `state`
  bool listed = true;  // still in the registry (not evicted, not finished)
  std::list<std::shared_ptr<admin_connection>>::iterator self;
};

struct admin_registry {
  std::list<std::shared_ptr<admin_connection>> open;  // oldest first

  // Closes the connection that can best lose its place (see above). Returns false when there
  // is none.
  bool evict_one() {
    admin_connection* victim = nullptr;
    for (const auto& c : open) {
      if (victim == nullptr || c->state < victim->state ||
          (c->state == victim->state && c->since < victim->since)) {
        victim = c.get();
      }
    }
    if (victim == nullptr) {
      return false;
    }
    boost::system::error_code ignored;
    victim->stream.socket().close(ignored);  // its pending operation ends with an error
    remove(*victim);
    return true;
  }

  void remove(admin_connection& c) {
    if (c.listed) {
      c.listed = false;
      open.erase(c.self);  // last: may release `c` if the coroutine already finished
    }
  }
};

void enter(admin_connection& c, admin_connection::phase p) {
  c.state = p;
  c.since = std::chrono::steady_clock::now();
}

asio::awaitable<void> serve_admin_connection(std::shared_ptr<admin_connection> conn,
                                             const admin_context* ctx,
                                             std::shared_ptr<admin_registry> registry) {
  auto& stream = conn->stream;
  beast::flat_buffer buf;
  // The first request's head must be complete within head_timeout of the connection.
  stream.expires_after(head_timeout);
  for (bool first = true;; first = false) {
    bhttp::request_parser<bhttp::empty_body> parser;
    parser.header_limit(8 * 1024);
    if (buf.size() == 0) {
      enter(*conn, admin_connection::phase::waiting);
      if (!first) {
        stream.expires_after(keep_alive_idle);
      }
      auto [ec, n] = co_await stream.async_read_some(buf.prepare(1024), core::nothrow);
      if (ec || !conn->listed) {
        break;
      }
      buf.commit(n);
      if (!first) {
        stream.expires_after(head_timeout);
      }
    }
    enter(*conn, admin_connection::phase::reading);
    auto [ec, n] = co_await bhttp::async_read(stream, buf, parser, core::nothrow);
    if (ec || !conn->listed) {
      break;
    }
    enter(*conn, admin_connection::phase::busy);
    auto res = handle(parser.get(), *ctx);
    const bool head = parser.get().method() == bhttp::verb::head;
    res.keep_alive(parser.get().keep_alive());
    stream.expires_after(write_timeout);
    if (head) {
      // The length of the GET answer, no body.
      bhttp::response<bhttp::empty_body> h{res.base()};
      auto [wec, wn] = co_await bhttp::async_write(stream, h, core::nothrow);
      if (wec || !conn->listed) {
        break;
      }
    } else {
      auto [wec, wn] = co_await bhttp::async_write(stream, res, core::nothrow);
      if (wec || !conn->listed) {
        break;
      }
    }
    if (!res.keep_alive()) {
      break;
    }
  }
  if (conn->listed) {
    boost::system::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    registry->remove(*conn);
  }
}

}  // namespace

asio::awaitable<void> run_admin(tcp::acceptor& acceptor, const admin_context& ctx) {
  auto registry = std::make_shared<admin_registry>();
  asio::steady_timer pause(acceptor.get_executor());
  net::accept_backoff backoff;
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(core::nothrow);
    if (!acceptor.is_open() || ec == asio::error::operation_aborted) {
      co_return;
    }
    if (ec) {
      // Out of descriptors, the probe stays queued and the listener readable: retrying at once
      // would spin the main thread (signals, reloads, DNS) at full CPU. Wait as the workers do.
      observe::process_counters().accept_errors.fetch_add(1, std::memory_order_relaxed);
      if (!backoff.in_episode()) {
        observe::warn("admin: accept: " + ec.message() +
                      "; accepting again with a backoff of 10 ms up to 1 s");
      }
      pause.expires_after(backoff.failed());
      co_await pause.async_wait(core::nothrow);
      continue;
    }
    if (const auto failures = backoff.succeeded(); failures != 0) {
      observe::warn("admin: accepting again after " + std::to_string(failures) +
                    " failed attempts");
    }
    if (registry->open.size() >= max_admin_connections && !registry->evict_one()) {
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    auto conn = std::make_shared<admin_connection>(std::move(socket));
    registry->open.push_back(conn);
    conn->self = std::prev(registry->open.end());
    asio::co_spawn(acceptor.get_executor(), serve_admin_connection(conn, &ctx, registry),
                   observe::log_exception{"admin connection"});
  }
}

}  // namespace wk::app
