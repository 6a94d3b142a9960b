// Why this file is over 600 lines: it is the process's main thread whole: start-up, listeners,
// reload (SIGHUP), log reopening (SIGUSR1), the binary upgrade (SIGUSR2) and the graceful drain,
// all steps of one state machine over server_state, which nothing outside this file sees.

#include "app/server.hpp"

#include "app/admin.hpp"
#include "app/pid_file.hpp"
#include "app/tenants.hpp"
#include "app/upgrade.hpp"
#include "app/worker.hpp"
#include "config/load.hpp"
#include "config/tenant_merge.hpp"
#include "core/asio.hpp"
#include "core/endpoint.hpp"
#include "core/failure.hpp"
#include "net/listener.hpp"
#include "net/outcome_channel.hpp"
#include "net/ring.hpp"
#include "net/sd_notify.hpp"
#include "observe/counters.hpp"
#include "observe/log.hpp"
#include "observe/log_file.hpp"
#include "runtime/runtime.hpp"
#include "session/handoff.hpp"
#include "validation/events.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iostream>
#include <optional>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace wk::app {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

// Whether the workers run on io_uring (net/ring.hpp): `io` from the config, unless WKPROXY_IO
// overrides it (auto, io_uring or epoll: to switch without editing the file, and how CI runs
// the suite on both). Logged once; nullopt (after saying why) when io_uring is demanded and
// refused.
std::optional<bool> choose_io(config::io_engine configured, const std::string& config_path) {
  auto engine = configured;
  std::string source = "io";
  if (const char* env = std::getenv("WKPROXY_IO"); env != nullptr && *env != '\0') {
    const auto named = config::io_engine_named(env);
    if (!named) {
      std::cerr << "WKPROXY_IO: expected auto, io_uring or epoll, got \"" << env << "\"\n";
      return std::nullopt;
    }
    engine = *named;
    source = "WKPROXY_IO";
  }
  if (engine == config::io_engine::epoll) {
    observe::info("io: epoll (" + source + ": epoll)");
    return false;
  }
  const std::string refused = net::ring::probe();
  if (refused.empty()) {
    observe::info("io: io_uring");
    return true;
  }
  if (engine == config::io_engine::io_uring) {
    std::cerr << (source == "io" ? config_path + ": io" : source)
              << ": io_uring is refused here: " << refused << '\n';
    return std::nullopt;
  }
  observe::info("io: epoll (io_uring refused: " + refused + ")");
  return false;
}

// "errors: bad_request=3 header_timeout=1; limits: pipelined=2", or "" when nothing was counted.
std::string counters_summary() {
  const auto& c = observe::process_counters();
  std::string errors;
  for (std::size_t i = 1; i < static_cast<std::size_t>(core::failure::count_); ++i) {
    if (auto n = c.failures[i].load(std::memory_order_relaxed); n > 0) {
      errors += (errors.empty() ? "" : " ") +
                std::string(core::name_of(static_cast<core::failure>(i))) + "=" + std::to_string(n);
    }
  }
  static constexpr std::string_view limit_names[] = {"connections", "requests_per_connection",
                                                     "pipelined", "idle_evicted"};
  static_assert(std::size(limit_names) == static_cast<std::size_t>(observe::limit_event::count_));
  std::string limits;
  for (std::size_t i = 0; i < c.limits.size(); ++i) {
    if (auto n = c.limits[i].load(std::memory_order_relaxed); n > 0) {
      limits += (limits.empty() ? "" : " ") + std::string(limit_names[i]) + "=" + std::to_string(n);
    }
  }
  for (std::size_t i = 0; i < c.connections.size(); ++i) {
    if (auto n = c.connections[i].load(std::memory_order_relaxed); n > 0) {
      errors += (errors.empty() ? "" : " ") + std::string(observe::connection_event_names[i]) +
                "=" + std::to_string(n);
    }
  }
  if (auto n = c.accept_errors.load(std::memory_order_relaxed); n > 0) {
    errors += (errors.empty() ? "" : " ") + std::string("accept_errors=") + std::to_string(n);
  }
  std::string out;
  if (!errors.empty()) {
    out += "errors: " + errors;
  }
  if (!limits.empty()) {
    out += (out.empty() ? "" : "; ") + std::string("limits hit: ") + limits;
  }
  return out;
}

observe::level level_of(config::log_level l) {
  switch (l) {
  case config::log_level::debug:
    return observe::level::debug;
  case config::log_level::info:
    return observe::level::info;
  case config::log_level::warn:
    return observe::level::warn;
  case config::log_level::error:
    return observe::level::error;
  }
  return observe::level::info;
}

// "stdout (json)", "/var/log/wkproxy/access.log (combined)", "off".
std::string describe(const config::access_log& a) {
  std::string out;
  switch (a.output) {
  case config::log_output::stdout_stream:
    out = "stdout";
    break;
  case config::log_output::stderr_stream:
    out = "stderr";
    break;
  case config::log_output::off:
    return "off";
  case config::log_output::file:
    out = a.path;
    break;
  }
  return out + (a.format == config::log_format::combined ? " (combined)" : " (json)");
}

// The destination of `a`: stdout, stderr, a newly opened file, or nullptr for off. On failure,
// why.
std::variant<std::shared_ptr<const observe::log_file>, std::string>
open_access_log(const config::access_log& a) {
  switch (a.output) {
  case config::log_output::stdout_stream:
    return observe::log_file::standard(1);
  case config::log_output::stderr_stream:
    return observe::log_file::standard(2);
  case config::log_output::off:
    return std::shared_ptr<const observe::log_file>();
  case config::log_output::file:
    break;
  }
  return observe::log_file::open(a.path);
}

struct server_state {
  server_options opt;
  asio::io_context ioc{1};
  upstream::resolver_registry dns;
  std::shared_ptr<const runtime::snapshot> current;
  // The access log's destination for current->cfg->access_log, shared with the workers. Kept
  // here so that a reload with an unchanged access_log keeps the same file, and so that
  // SIGUSR1 knows what to reopen.
  std::shared_ptr<const observe::log_file> access_file;
  std::vector<std::unique_ptr<net::listener_socket>> listeners;
  std::vector<std::unique_ptr<worker>> workers;
  bool stopping = false;
  bool upgrading = false;
  // This process's end of the channel to the successor that serves now (binary upgrade): the
  // drain hands the plain-HTTP connections over on it. -1 otherwise.
  int handoff_channel = -1;
  // In a successor: the old process may still hand connections over (until it exits). A drain
  // of this process waits for that too, or a connection sent late would be lost with it.
  bool taking_over = false;
  std::unique_ptr<net::listener_socket> admin;  // the admin listener, when configured
  admin_context admin_ctx;
  std::vector<std::string> listener_labels;  // metrics label per index (bound addresses)
  // aws: the config as its files say (before the API's tenants are merged in), the candidate a
  // load just read, the poller and what it learned per tenant.
  std::shared_ptr<const config::config> file_cfg;
  std::shared_ptr<const config::config> loaded_file_cfg;
  std::unique_ptr<tenant_poller> poller;
  std::map<std::string, tenant_record> tenants;
  std::chrono::system_clock::time_point watching_since;
  // systemd (sd_notify) and the answer to `wkproxy reload` / `wkproxy upgrade`: see
  // notify_reload and hand_over_main below.
  net::sd_notifier notify;
  std::string pid_file;        // written once serving ("" = none): --pid-file, else pid_file:
  std::string pid_file_key;    // the config's pid_file at start (a reload cannot move the file)
  std::string reload_refusal;  // why the reload in progress was refused (for the command)
};

// A reload refused: logged, and kept for the command waiting on the outcome.
void refuse_reload(server_state& s, const std::string& why) {
  observe::error("reload refused: " + why);
  s.reload_refusal += (s.reload_refusal.empty() ? "" : "\n") + why;
}

// The API's tenants that `cfg` still lists, as the merge wants them.
std::vector<config::api_tenant> listed_tenants(const server_state& s, const config::config& cfg) {
  auto all = api_tenants(s.tenants);
  std::erase_if(all, [&](const config::api_tenant& t) {
    return std::find(cfg.aws.tenants.begin(), cfg.aws.tenants.end(), t.tenant) ==
           cfg.aws.tenants.end();
  });
  return all;
}

// Gives `slot` its metrics label: its bound address, the same index whenever that address
// comes back; past the last label, listeners share an "other" one.
void assign_label(server_state& s, net::listener_slot& slot) {
  const auto it = std::find(s.listener_labels.begin(), s.listener_labels.end(), slot.name);
  if (it != s.listener_labels.end()) {
    slot.metrics_index = static_cast<std::size_t>(it - s.listener_labels.begin());
    return;
  }
  if (s.listener_labels.size() + 1 < observe::max_listener_labels) {
    s.listener_labels.push_back(slot.name);
    slot.metrics_index = s.listener_labels.size() - 1;
    return;
  }
  if (s.listener_labels.size() < observe::max_listener_labels) {
    s.listener_labels.emplace_back("other");
  }
  slot.metrics_index = observe::max_listener_labels - 1;
}

void setup_admin_context(server_state& s) {
  auto& c = s.admin_ctx;
  c.version = s.opt.version;
  c.revision = s.opt.revision;
  c.started = std::chrono::system_clock::now();
  c.last_reload = c.started;
  c.config_loaded = c.started;
  c.current = [&s] { return s.current; };
  c.draining = [&s] { return s.stopping; };
  c.workers = [&s] {
    std::vector<const observe::worker_metrics*> out;
    for (const auto& w : s.workers) {
      out.push_back(&w->metrics());
    }
    return out;
  };
  c.listener_labels = [&s] { return s.listener_labels; };
  c.tenants = [&s] {
    return tenant_views(s.current->cfg->aws.tenants, s.tenants, *s.current,
                        std::chrono::system_clock::now(), s.watching_since);
  };
  c.credentials_source = [&s] { return s.poller ? s.poller->credentials_source() : std::string(); };
  c.api_stats = [&s]() -> const api_stats* { return s.poller ? &s.poller->stats() : nullptr; };
  c.listeners = [&s] {
    std::vector<admin_context::listener_state> out;
    for (const auto& l : s.listeners) {
      out.push_back({l->slot->name, std::string(config::name_of(l->cfg.mode)),
                     l->slot->active.load(std::memory_order_relaxed)});
    }
    return out;
  };
}

std::shared_ptr<const runtime::snapshot> load_runtime_quietly(server_state& s,
                                                              bool reporting_only_to_log) {
  auto loaded = config::load_file(s.opt.config_path, config::process_env());
  if (!loaded.errors.empty()) {
    for (const auto& e : loaded.errors) {
      if (reporting_only_to_log) {
        refuse_reload(s, e.to_string());
      } else {
        std::cerr << e.to_string() << '\n';
      }
    }
    return nullptr;
  }
  s.loaded_file_cfg = std::make_shared<const config::config>(*loaded.cfg);
  for (const auto& w : config::merge_api_tenants(*loaded.cfg, listed_tenants(s, *loaded.cfg))) {
    observe::warn("aws: " + w);
  }
  std::vector<std::string> warnings;
  auto built = runtime::build_runtime(std::move(*loaded.cfg), s.dns, warnings, s.current.get());
  for (const auto& w : warnings) {
    observe::warn(s.opt.config_path + ": " + w);
  }
  if (auto* errors = std::get_if<std::vector<std::string>>(&built)) {
    for (const auto& e : *errors) {
      if (reporting_only_to_log) {
        refuse_reload(s, s.opt.config_path + ": " + e);
      } else {
        std::cerr << s.opt.config_path << ": " << e << '\n';
      }
    }
    return nullptr;
  }
  auto rt = std::get<0>(std::move(built));
  const auto& v = rt->cfg->validation;
  if (auto problem = validation::events().configure(v.events, v.events_per_domain,
                                                    validation::bucket_names(*rt->cfg));
      !problem.empty()) {
    if (reporting_only_to_log) {
      refuse_reload(s, problem);
    } else {
      std::cerr << s.opt.config_path << ": " << problem << '\n';
    }
    return nullptr;
  }
  return rt;
}

std::shared_ptr<const runtime::snapshot> load_runtime(server_state& s, bool reporting_only_to_log) {
  auto rt = load_runtime_quietly(s, reporting_only_to_log);
  if (!rt && reporting_only_to_log) {
    observe::process_counters().reload_failures.fetch_add(1, std::memory_order_relaxed);
  }
  return rt;
}

bool write_ports_file(const server_state& s) {
  if (s.opt.ports_file.empty()) {
    return true;
  }
  json::array listen;
  for (const auto& l : s.listeners) {
    listen.emplace_back(core::endpoint_text(l->bound));
  }
  json::object doc;
  doc["listen"] = std::move(listen);
  if (s.admin) {
    doc["admin"] = core::endpoint_text(s.admin->bound);
  }
  doc["pid"] = ::getpid();
  // Written beside the target and renamed into place: readers never see half a file.
  auto tmp = s.opt.ports_file + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << json::serialize(doc) << '\n';
    if (!f) {
      observe::error("cannot write " + tmp);
      return false;
    }
  }
  return std::rename(tmp.c_str(), s.opt.ports_file.c_str()) == 0;
}

// How many entries before `index` in `listen` have the same address text (see listener_slot).
std::size_t ordinal_of(const std::vector<config::listener>& listen, std::size_t index) {
  return static_cast<std::size_t>(
      std::count_if(listen.begin(), listen.begin() + static_cast<std::ptrdiff_t>(index),
                    [&](const config::listener& l) { return l.address == listen[index].address; }));
}

// Listeners of `cfg` that are not open yet, opened (or refused: the reason).
std::variant<std::vector<std::unique_ptr<net::listener_socket>>, std::string>
open_new_listeners(server_state& s, const config::config& cfg) {
  std::vector<std::unique_ptr<net::listener_socket>> opened;
  for (std::size_t i = 0; i < cfg.listen.size(); ++i) {
    const auto& l = cfg.listen[i];
    const bool open = std::any_of(s.listeners.begin(), s.listeners.end(),
                                  [&](const auto& have) { return have->cfg.address == l.address; });
    if (open) {
      continue;
    }
    auto result = net::open_listener(s.ioc, l, cfg.limits.max_connections);
    if (auto* e = std::get_if<std::string>(&result)) {
      return *e;
    }
    opened.push_back(std::get<0>(std::move(result)));
    opened.back()->slot->ordinal = ordinal_of(cfg.listen, i);
    assign_label(s, *opened.back()->slot);
  }
  return opened;
}

// What a reload changes, for diagnosis (debug level): the upstreams, the access log and the
// sizes of the allow-list and the token table.
void describe_reload(const config::config& before, const config::config& after) {
  if (!observe::enabled(observe::level::debug)) {
    return;
  }
  if (before.origin.url != after.origin.url) {
    observe::debug("reload: origin " + before.origin.url + " -> " + after.origin.url);
  }
  if (before.cloudfront.url != after.cloudfront.url) {
    observe::debug("reload: cloudfront " + before.cloudfront.url + " -> " + after.cloudfront.url);
  }
  if (before.access_log != after.access_log) {
    observe::debug("reload: access_log " + describe(before.access_log) + " -> " +
                   describe(after.access_log));
  }
  if (before.workers != after.workers) {
    observe::debug("reload: workers is read at start only; keeping the running workers");
  }
  if (before.io != after.io) {
    observe::info("reload: io is read at start only; the workers keep " +
                  std::string(config::name_of(before.io)));
  }
  observe::debug("reload: " + std::to_string(after.listen.size()) + " listener(s), " +
                 std::to_string(after.validation.domains.size()) + " domain pattern(s), " +
                 std::to_string(after.tokens.size()) + " token(s)");
}

// aws: a new snapshot from the file's config with the API's tenants merged in, published to
// the workers like a reload's, but with nothing read from disk but what the snapshot itself
// reads (CA files, static_dir) and no listener or log touched.
void apply_tenants(server_state& s) {
  config::config cfg = *s.file_cfg;
  for (const auto& w : config::merge_api_tenants(cfg, listed_tenants(s, cfg))) {
    observe::warn("aws: " + w);
  }
  std::vector<std::string> warnings;
  auto built = runtime::build_runtime(std::move(cfg), s.dns, warnings, s.current.get());
  if (auto* errors = std::get_if<std::vector<std::string>>(&built)) {
    for (const auto& e : *errors) {
      observe::error("aws: the tenants' new tokens cannot be applied: " + e +
                     "; the running ones stay");
    }
    return;
  }
  auto rt = std::get<0>(std::move(built));
  const auto& v = rt->cfg->validation;
  if (auto problem = validation::events().configure(v.events, v.events_per_domain,
                                                    validation::bucket_names(*rt->cfg));
      !problem.empty()) {
    observe::error("aws: " + problem);
  }
  for (auto& w : s.workers) {
    w->publish(rt, s.access_file);
  }
  s.current = std::move(rt);
}

// Logs each tenant domain's stage once, when it changes.
void log_transitions(server_state& s) {
  const auto views = tenant_views(s.current->cfg->aws.tenants, s.tenants, *s.current,
                                  std::chrono::system_clock::now(), s.watching_since);
  for (const auto& t : views) {
    const auto rec = s.tenants.find(t.tenant);
    if (rec == s.tenants.end()) {
      continue;
    }
    for (const auto& d : t.domains) {
      auto& seen = rec->second.stages[d.domain];
      if (seen != d.stage) {
        seen = d.stage;
        observe::info("tenant " + t.tenant + ", " + d.domain + ": " + d.sentence);
      }
    }
  }
}

bool same_tokens(const std::vector<config::token_entry>& a,
                 const std::vector<config::token_entry>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.domain == y.domain && x.redirect_from == y.redirect_from &&
           x.redirect_to == y.redirect_to && x.tenant == y.tenant;
  });
}

std::vector<std::string> domain_names(const tenant_record& r) {
  std::vector<std::string> out;
  for (const auto& d : r.last.distribution.domains) {
    out.push_back(d.domain);
  }
  return out;
}

// A poll's report, on the main thread.
void on_report(server_state& s, tenant_report report) {
  const auto& listed = s.current->cfg->aws.tenants;
  if (s.stopping || std::find(listed.begin(), listed.end(), report.tenant) == listed.end()) {
    return;  // from before a reload that removed the tenant
  }
  auto& rec = s.tenants[report.tenant];
  const auto tokens_before = rec.last.certificate.tokens;
  const auto domains_before = domain_names(rec);
  if (report.error != rec.last_error) {
    if (!report.error.empty()) {
      observe::warn(
          "tenant " + report.tenant + ": " + report.error +
          (rec.last.certificate.tokens.empty() ? std::string() : "; its last good tokens stay"));
    } else if (!rec.last_error.empty()) {
      observe::info("tenant " + report.tenant + ": the CloudFront API answers again");
    }
  }
  for (const auto& w : report.certificate.warnings) {
    if (std::find(rec.last.certificate.warnings.begin(), rec.last.certificate.warnings.end(), w) ==
        rec.last.certificate.warnings.end()) {
      observe::warn("tenant " + report.tenant + ": " + w);
    }
  }
  fold_report(rec, std::move(report));
  if (!same_tokens(tokens_before, rec.last.certificate.tokens) ||
      domains_before != domain_names(rec)) {
    apply_tenants(s);
    observe::info("tenant " + rec.last.tenant + ": serving " +
                  aws::count_of(rec.last.certificate.tokens.size(), "token") + " for " +
                  aws::count_of(domain_names(rec).size(), "domain") +
                  " (from the CloudFront API, no reload)");
  }
  log_transitions(s);
}

// Starts (or restarts, after a reload changed aws:) the poller; stops it without aws:. The
// reason when it cannot start.
std::string start_poller(server_state& s) {
  s.poller.reset();
  const auto& cfg = *s.current->cfg;
  if (!cfg.aws.enabled) {
    s.tenants.clear();
    return {};
  }
  auto started = tenant_poller::start(
      cfg.aws, cfg.validation.prefix, config::process_env(), [&s](tenant_report r) {
        asio::post(s.ioc, [&s, r = std::move(r)]() mutable { on_report(s, std::move(r)); });
      });
  if (auto* reason = std::get_if<std::string>(&started)) {
    observe::error(*reason + "; tenants are not polled");
    return *reason;
  }
  s.poller = std::get<0>(std::move(started));
  observe::info("aws: following " + aws::count_of(cfg.aws.tenants.size(), "tenant") +
                ", polled every " + std::to_string(cfg.aws.poll_interval.count() / 1000) + " s");
  return {};
}

// Every few seconds: stages that change with time alone (the CA's fetch, the quiet period).
asio::awaitable<void> watch_tenants(server_state* s) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!s->stopping) {
    timer.expires_after(std::chrono::seconds(5));
    co_await timer.async_wait(core::nothrow);
    if (s->poller) {
      log_transitions(*s);
    }
  }
}

void reload(server_state& s) {
  auto rt = load_runtime(s, true);
  s.admin_ctx.last_reload = std::chrono::system_clock::now();
  s.admin_ctx.last_reload_ok = rt != nullptr;
  if (!rt) {
    observe::error("reload of " + s.opt.config_path + " failed; the running config stays");
    return;
  }
  // The same access_log keeps its open file (SIGUSR1 is what reopens it); a changed one is
  // opened now, and a file that cannot be opened refuses the reload like any config error.
  auto access_file = s.access_file;
  if (rt->cfg->access_log.output != s.current->cfg->access_log.output ||
      rt->cfg->access_log.path != s.current->cfg->access_log.path) {
    auto opened = open_access_log(rt->cfg->access_log);
    if (auto* e = std::get_if<std::string>(&opened)) {
      refuse_reload(s, "access_log: " + *e + "; the running config stays");
      observe::process_counters().reload_failures.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    access_file = std::get<0>(std::move(opened));
  }
  // Listeners: the ones that stay are never touched; new ones are opened first (a bind error
  // refuses the whole reload); removed ones stop accepting and their connections finish.
  auto opened = open_new_listeners(s, *rt->cfg);
  if (auto* e = std::get_if<std::string>(&opened)) {
    refuse_reload(s, "listen: " + *e + "; the running config stays");
    observe::process_counters().reload_failures.fetch_add(1, std::memory_order_relaxed);
    s.admin_ctx.last_reload_ok = false;
    return;
  }
  for (auto it = s.listeners.begin(); it != s.listeners.end();) {
    const auto& cfg_listen = rt->cfg->listen;
    const bool kept = std::any_of(cfg_listen.begin(), cfg_listen.end(),
                                  [&](const auto& l) { return l.address == (*it)->cfg.address; });
    if (kept) {
      ++it;
      continue;
    }
    for (auto& w : s.workers) {
      w->remove_listener((*it)->slot);
    }
    observe::info("reload: stopped listening on " + (*it)->slot->name);
    it = s.listeners.erase(it);  // the workers' own descriptors close on their threads
  }
  s.dns.set_interval(rt->cfg->dns.refresh);
  // The level first: a reload that turns debug on shows its own details.
  observe::set_level(level_of(rt->cfg->log_level));
  describe_reload(*s.current->cfg, *rt->cfg);
  for (auto& w : s.workers) {
    w->publish(rt, access_file);
  }
  s.access_file = std::move(access_file);
  for (auto& l : std::get<0>(opened)) {
    for (auto& w : s.workers) {
      w->add_listener(*l);
    }
    observe::info("reload: listening on " + l->slot->name);
    s.listeners.push_back(std::move(l));
  }
  if (rt->cfg->admin.address != s.current->cfg->admin.address ||
      rt->cfg->admin.enabled != s.current->cfg->admin.enabled) {
    observe::warn("reload: the admin listener changes only at restart (the token applies now)");
  }
  const config::aws_api before = s.current->cfg->aws;
  s.current = std::move(rt);
  s.file_cfg = s.loaded_file_cfg;
  std::erase_if(s.tenants, [&](const auto& t) {
    const auto& listed = s.current->cfg->aws.tenants;
    return std::find(listed.begin(), listed.end(), t.first) == listed.end();
  });
  const auto& after = s.current->cfg->aws;
  if (after.enabled != before.enabled || after.tenants != before.tenants ||
      after.poll_interval != before.poll_interval || after.profile != before.profile ||
      after.request_timeout != before.request_timeout) {
    start_poller(s);
  }
  s.admin_ctx.config_loaded = s.admin_ctx.last_reload;
  s.dns.prune();
  write_ports_file(s);
  observe::process_counters().reloads.fetch_add(1, std::memory_order_relaxed);
  observe::info("reloaded " + s.opt.config_path);
}

// SIGUSR1: log files are opened again at their configured paths (logrotate renamed them).
// The workers get the new access-log file with a post; each writes what it buffered to the old
// one first, and the old descriptor closes when the last of them lets go. A file that cannot
// be opened is reported and the old one stays in use.
void reopen_logs(server_state& s) {
  const auto& a = s.current->cfg->access_log;
  if (a.output == config::log_output::file) {
    auto opened = observe::log_file::open(a.path);
    if (auto* e = std::get_if<std::string>(&opened)) {
      observe::error("SIGUSR1: access log: " + *e + "; still writing to the file open before");
    } else {
      s.access_file = std::get<0>(std::move(opened));
      for (auto& w : s.workers) {
        w->reopen_access_log(s.access_file);
      }
      observe::info("SIGUSR1: reopened access log " + a.path);
    }
  }
  const auto& events = s.current->cfg->validation.events;
  if (events.kind == config::event_log::output::file) {
    if (auto problem = validation::events().reopen(); !problem.empty()) {
      observe::error("SIGUSR1: " + problem + "; still writing to the file open before");
    } else {
      observe::info("SIGUSR1: reopened validation event log " + events.path);
    }
  }
}

// Closes a listening socket that a successor may hold too. release() and then close(), not
// close(): for a socket Asio opened itself, close() skips EPOLL_CTL_DEL, since closing the
// descriptor normally takes it out of epoll. It does not while another process holds the same
// socket: the stale registration would wake this process for every connection the successor
// gets (measured: hundreds of wake-ups of the draining main thread per thousand connections).
void close_shared(asio::ip::tcp::acceptor& a) {
  boost::system::error_code ec;
  const int fd = a.release(ec);  // pending accepts complete with operation_aborted
  if (!ec) {
    ::close(fd);
  } else {
    a.close(ec);
  }
}

// Stops accepting on the admin socket, once a successor serves it: both processes hold the
// same socket, and a probe accepted here would hear "draining" (or nothing, once this process
// exits) while the new process is ready. Connections already open here are still answered
// until the process exits (/readyz: 503). Not done for a plain graceful stop: then the admin
// listener answers until the end, so probes see 503 rather than a refused connection.
void stop_admin(server_state& s) {
  if (!s.admin || !s.admin->acceptor.is_open()) {
    return;
  }
  close_shared(s.admin->acceptor);  // run_admin ends: its accept is cancelled
  observe::info("stopped accepting admin connections (the new process serves them)");
}

// Graceful stop: keep accepting for `grace` (load balancers notice the readiness flip), then
// stop accepting and let every open connection end on its own up to drain_timeout: busy ones
// finish their exchange, idle ones are answered once more (Connection: close), then stop.
asio::awaitable<void> drain_and_stop(server_state* s, std::chrono::milliseconds grace) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto& sd = s->current->cfg->shutdown;
  if (grace.count() > 0) {
    observe::info("stopping: accepting for " + std::to_string(grace.count()) + " ms more");
    timer.expires_after(grace);
    co_await timer.async_wait(core::nothrow);
  }
  if (s->handoff_channel >= 0) {
    observe::info("stopping: handing plain-HTTP connections to the new process at their next "
                  "request boundary; draining the others");
  } else {
    observe::info("stopping: draining connections");
  }
  for (auto& w : s->workers) {
    w->begin_stop(s->handoff_channel >= 0 ? ::fcntl(s->handoff_channel, F_DUPFD_CLOEXEC, 0) : -1);
  }
  if (s->handoff_channel >= 0) {
    ::close(s->handoff_channel);  // each worker holds its own descriptor of it now
    s->handoff_channel = -1;
  }
  // The workers' descriptors are closed by begin_stop; after a SIGUSR2 the successor holds
  // these sockets too.
  // Kept (closed): a connection the process this one replaced hands over late still finds its
  // listener's settings (take_over_connections).
  for (auto& l : s->listeners) {
    close_shared(l->acceptor);
  }
  // Open connections, idle ones included: an idle keep-alive connection is kept until its
  // next request (answered with Connection: close) or its own idle deadline, never closed
  // while its client may be sending.
  const auto open_connections = [s] {
    std::size_t active = 0;
    for (auto& w : s->workers) {
      active += w->active();
    }
    return active;
  };
  auto deadline = std::chrono::steady_clock::now() + sd.drain_timeout;
  std::size_t active = open_connections();
  while ((active != 0 || s->taking_over) && std::chrono::steady_clock::now() < deadline) {
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(core::nothrow);
    active = open_connections();
  }
  if (const auto moved =
          observe::process_counters().connections_handed_off.load(std::memory_order_relaxed);
      moved != 0) {
    observe::info("upgrade: handed " + std::to_string(moved) + " connection(s) to the new process");
  }
  if (active != 0) {
    observe::info("stopping: drain_timeout reached with " + std::to_string(active) +
                  " connection(s) open; closing them");
    for (auto& w : s->workers) {
      w->close_idle();  // runs before the workers stop (posted first)
    }
  }
  s->ioc.stop();
}

void begin_stop(server_state* s, std::chrono::milliseconds grace) {
  s->notify.notify("STOPPING=1");  // nothing once a successor is the main process
  s->stopping = true;
  asio::co_spawn(s->ioc, drain_and_stop(s, grace), observe::log_exception{"drain"});
}

// systemd and the outcome commands. systemd hears READY=1 once this process serves (from the
// process upgrading to it instead, when there is one), RELOADING=1 ... READY=1 around a reload,
// STOPPING=1 when a graceful stop begins; after a binary upgrade the old process names its
// successor (MAINPID=, READY=1) and is silent from then on. `wkproxy reload` and `wkproxy
// upgrade` get one line each time a SIGHUP or SIGUSR2 has been dealt with
// (net/outcome_channel.hpp).

std::string serving_status(const server_state& s) {
  return "STATUS=serving on " + std::to_string(s.listeners.size()) + " listener(s), pid " +
         std::to_string(::getpid());
}

// The pid file names this process. False (logged) when it cannot be written.
bool write_pid(const server_state& s) {
  if (s.pid_file.empty()) {
    return true;
  }
  if (auto problem = write_pid_file(s.pid_file, ::getpid()); !problem.empty()) {
    observe::error("pid_file: " + problem);
    return false;
  }
  return true;
}

// Serving: READY=1, unless a process upgrading to us tells systemd for us (it must first know
// that we serve, and it is the main process systemd follows until it says otherwise).
void announce_ready(server_state& s, bool started_by_upgrade) {
  if (!s.notify.problem().empty()) {
    observe::warn(s.notify.problem());
  }
  if (!started_by_upgrade) {
    s.notify.notify("READY=1\n" + serving_status(s) + "\nMAINPID=" + std::to_string(::getpid()));
  }
}

// SIGHUP, with systemd told before and after and the outcome reported.
void notify_reload(server_state& s) {
  s.notify.notify("RELOADING=1\n" + net::monotonic_usec_field() + "\nSTATUS=reloading");
  auto& failures = observe::process_counters().reload_failures;
  const auto failed_before = failures.load(std::memory_order_relaxed);
  s.reload_refusal.clear();
  reload(s);
  const bool applied = failures.load(std::memory_order_relaxed) == failed_before;
  if (applied && s.current->cfg->pid_file != s.pid_file_key) {
    observe::warn("reload: pid_file is read at start only; still writing " +
                  (s.pid_file.empty() ? std::string("none") : s.pid_file));
  }
  s.notify.notify("READY=1\n" + serving_status(s));
  net::report_outcome(applied ? std::string("reloaded")
                              : "reload refused: " + (s.reload_refusal.empty()
                                                          ? std::string("see the log")
                                                          : s.reload_refusal));
}

// The successor serves: it is the main process now. systemd is told so by us (NotifyAccess=all
// in the unit), and we send nothing more: not even STOPPING=1 while we drain.
void hand_over_main(server_state& s, pid_t successor) {
  s.notify.notify("MAINPID=" + std::to_string(successor) + "\nREADY=1");
  s.notify.disable();
  net::report_outcome("upgraded " + std::to_string(successor));
}

// The successor never served. It may have written the ports and pid files before it failed:
// they name this process again.
void upgrade_failed(server_state& s, const std::string& why) {
  write_ports_file(s);
  write_pid(s);
  net::report_outcome("upgrade failed: " + why);
}

// SIGUSR2: start this binary again with the listening sockets, wait until it serves, then
// drain and exit. If it never gets ready, kill it and keep serving.
asio::awaitable<void> upgrade(server_state* s) {
  s->upgrading = true;
  // In config order (ordinal among listeners with the same address text): the successor pairs
  // the k-th entry of a text with its k-th listener of that text, so each keeps its own port.
  std::vector<net::listener_socket*> order;
  for (const auto& l : s->listeners) {
    order.push_back(l.get());
  }
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return a->slot->ordinal < b->slot->ordinal;
  });
  std::vector<handed_socket> handoff;
  for (auto* l : order) {
    handoff.push_back({l->cfg.address, l->acceptor.native_handle()});
  }
  // The admin socket goes along under its own key: the successor must not bind the admin port
  // again (it is in use: by us) and probes must not be refused while the processes change.
  std::optional<handed_socket> admin;
  if (s->admin && s->admin->acceptor.is_open()) {
    admin = handed_socket{s->admin->cfg.address, s->admin->acceptor.native_handle()};
  }
  auto result = spawn_successor(s->opt.exe, s->opt.args, handoff, admin);
  if (auto* e = std::get_if<std::string>(&result)) {
    observe::error("upgrade failed: " + *e + "; this process keeps serving");
    observe::process_counters().upgrades_failed.fetch_add(1, std::memory_order_relaxed);
    upgrade_failed(*s, *e);
    s->upgrading = false;
    co_return;
  }
  const auto child = std::get<spawned>(result);
  observe::info("upgrade: started " + s->opt.exe + " as pid " + std::to_string(child.pid) +
                "; waiting for it to serve");
  asio::posix::stream_descriptor pipe(s->ioc, child.ready_fd);
  asio::steady_timer timer(s->ioc);
  timer.expires_after(s->current->cfg->shutdown.upgrade_timeout);
  timer.async_wait([&pipe](const boost::system::error_code& ec) {
    if (!ec) {
      boost::system::error_code ignored;
      pipe.cancel(ignored);
    }
  });
  std::string got;
  char buf[64];
  bool timed_out = false;
  for (;;) {
    auto [ec, n] = co_await pipe.async_read_some(asio::buffer(buf), core::nothrow);
    got.append(buf, n);
    timed_out = ec == asio::error::operation_aborted;
    if (ec || got.find('\n') != std::string::npos) {
      break;
    }
  }
  timer.cancel();
  if (got.starts_with("ready")) {
    observe::info("upgrade: pid " + std::to_string(child.pid) +
                  " serves; this process drains and exits");
    hand_over_main(*s, child.pid);
    stop_admin(*s);
    if (!s->stopping) {
      s->handoff_channel = child.handoff_fd;
      begin_stop(s, std::chrono::milliseconds(0));
    } else {
      ::close(child.handoff_fd);  // already draining: its connections end here
    }
    co_return;
  }
  ::close(child.handoff_fd);  // nothing was handed over: every connection stays here
  const std::string why =
      "pid " + std::to_string(child.pid) +
      (timed_out ? " did not get ready within " +
                       std::to_string(s->current->cfg->shutdown.upgrade_timeout.count()) + " ms"
                 : " exited before it was ready (see its errors above)");
  observe::error("upgrade failed: " + why + "; this process keeps serving");
  observe::process_counters().upgrades_failed.fetch_add(1, std::memory_order_relaxed);
  ::kill(child.pid, SIGKILL);
  ::waitpid(child.pid, nullptr, 0);
  upgrade_failed(*s, why);
  s->upgrading = false;
}

// The public listener a handed-over connection came in on: same configured address and
// ordinal, and the socket's own local address on it. Null when this process has no such
// listener (a reload or the new config removed it) or it is not plain HTTP.
net::listener_socket* listener_of(server_state& s, const session::handoff_record& r, int fd) {
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  int type = 0;
  socklen_t tlen = sizeof type;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0 ||
      ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM ||
      (local.ss_family != AF_INET && local.ss_family != AF_INET6)) {
    return nullptr;
  }
  asio::ip::tcp::endpoint ep;
  std::memcpy(ep.data(), &local, std::min<std::size_t>(len, ep.capacity()));
  ep.resize(len);
  for (auto& l : s.listeners) {
    if (l->slot->address == r.listener && l->slot->ordinal == r.ordinal &&
        l->cfg.mode == config::listener_mode::http && l->bound.port() == ep.port() &&
        (l->bound.address().is_unspecified() || l->bound.address() == ep.address())) {
      return l.get();
    }
  }
  return nullptr;
}

// Binary upgrade, in the new process: takes over the connections the old one hands over on
// `fd` (session/handoff.hpp), spread over the workers, until it closes its end (it exited).
asio::awaitable<void> take_over_connections(server_state* s, int fd) {
  asio::posix::stream_descriptor channel(s->ioc, fd);
  s->taking_over = true;
  std::size_t taken = 0;
  std::size_t refused = 0;
  std::size_t next = 0;
  for (;;) {
    auto got = session::receive_descriptor(fd);
    if (const auto* err = std::get_if<int>(&got)) {
      if (*err != EAGAIN) {
        observe::warn("upgrade: connection hand-over channel: " + std::string(std::strerror(*err)));
        break;
      }
      auto [ec] =
          co_await channel.async_wait(asio::posix::stream_descriptor::wait_read, core::nothrow);
      if (ec) {
        break;
      }
      continue;
    }
    if (std::holds_alternative<std::nullopt_t>(got)) {
      break;  // the old process has exited (or handed over everything and closed)
    }
    auto& m = std::get<session::received>(got);
    if (m.fd < 0) {
      continue;
    }
    auto decoded = session::decode_handoff(m.message);
    auto* record = std::get_if<session::handoff_record>(&decoded);
    net::listener_socket* l = record != nullptr ? listener_of(*s, *record, m.fd) : nullptr;
    if (l == nullptr || s->workers.empty()) {
      // Closed: its listener is gone here. Logged, as it may cut a request in flight.
      ++refused;
      observe::warn_limited(
          "upgrade: a connection handed over " +
          (record != nullptr
               ? "for listener " + record->listener + " has no plain-HTTP listener here"
               : "is malformed: " + std::get<std::string>(decoded)) +
          "; closed");
      ::close(m.fd);
      continue;
    }
    ++taken;
    s->workers[next++ % s->workers.size()]->adopt(m.fd, l->slot, std::move(record->info),
                                                  record->served, std::move(record->early));
  }
  s->taking_over = false;
  if (taken + refused != 0) {
    observe::info("upgrade: took over " + std::to_string(taken) +
                  " connection(s) from the old process" +
                  (refused != 0 ? " (" + std::to_string(refused) + " closed)" : ""));
  }
}

// `signals` is created by run_server before anything announces readiness: a signal that
// arrives before this coroutine first runs is queued by Asio, never delivered with its default
// action (which would kill the process).
asio::awaitable<void> signal_loop(server_state* s, asio::signal_set* signals_ptr) {
  auto& signals = *signals_ptr;
  for (;;) {
    auto [ec, sig] = co_await signals.async_wait(core::nothrow);
    if (ec) {
      co_return;
    }
    if (sig == SIGHUP) {
      if (!s->stopping) {
        notify_reload(*s);
      } else {
        net::report_outcome("ignored: the process is stopping");
      }
      continue;
    }
    if (sig == SIGUSR1) {
      reopen_logs(*s);
      continue;
    }
    if (sig == SIGUSR2) {
      if (s->stopping || s->upgrading) {
        const std::string why = s->stopping ? "stopping" : "an upgrade is in progress";
        observe::warn("SIGUSR2 ignored: " + why);
        net::report_outcome("ignored: " + why);
      } else {
        asio::co_spawn(s->ioc, upgrade(s), observe::log_exception{"upgrade"});
      }
      continue;
    }
    if (s->stopping) {
      observe::warn("second stop signal: exiting now");
      s->ioc.stop();
      co_return;
    }
    begin_stop(s, s->current->cfg->shutdown.accept_grace);
  }
}

}  // namespace

int run_server(const server_options& opt) {
  std::signal(SIGPIPE, SIG_IGN);
  // Before this process opens anything itself: a descriptor number the environment names must
  // be one we inherited, never a file of ours that happened to get that number.
  auto inherited = inherited_sockets::from_environment();
  server_state s;
  s.opt = opt;
  s.notify = net::sd_notifier::from_environment();
  s.current = load_runtime(s, false);
  if (!s.current) {
    return 1;
  }
  s.pid_file_key = s.current->cfg->pid_file;
  s.pid_file = !opt.pid_file.empty() ? opt.pid_file : s.pid_file_key;
  s.file_cfg = s.loaded_file_cfg;
  s.watching_since = std::chrono::system_clock::now();
  const auto& cfg = *s.current->cfg;
  observe::set_level(level_of(cfg.log_level));
  {
    auto opened = open_access_log(cfg.access_log);
    if (auto* e = std::get_if<std::string>(&opened)) {
      std::cerr << s.opt.config_path << ": access_log: " << *e << '\n';
      return 1;
    }
    s.access_file = std::get<0>(std::move(opened));
  }
  for (const auto& w : inherited.warnings()) {
    observe::warn(w);
  }
  for (std::size_t i = 0; i < cfg.listen.size(); ++i) {
    const auto& l = cfg.listen[i];
    auto taken = inherited.take(l);
    if (auto* e = std::get_if<std::string>(&taken)) {
      std::cerr << s.opt.config_path << ": listen: " << *e << '\n';
      return 1;
    }
    const int fd = std::get<int>(taken);
    auto opened = fd >= 0 ? net::adopt_listener(s.ioc, l, fd, cfg.limits.max_connections)
                          : net::open_listener(s.ioc, l, cfg.limits.max_connections);
    if (auto* e = std::get_if<std::string>(&opened)) {
      std::cerr << s.opt.config_path << ": listen: " << *e << '\n';
      return 1;
    }
    s.listeners.push_back(std::get<0>(std::move(opened)));
    s.listeners.back()->slot->ordinal = ordinal_of(cfg.listen, i);
    assign_label(s, *s.listeners.back()->slot);
  }
  // The admin socket is opened (or taken over) before any worker accepts: a successor that
  // fails here must not have accepted, and then dropped, a connection of a public listener.
  if (cfg.admin.enabled) {
    config::listener a;
    a.address = cfg.admin.address;
    a.host = cfg.admin.host;
    a.port = cfg.admin.port;
    // Inherited from the process upgrading to us (or from systemd), or bound here.
    auto taken = inherited.take_admin(a);
    std::variant<std::unique_ptr<net::listener_socket>, std::string> opened;
    if (auto* e = std::get_if<std::string>(&taken)) {
      opened = *e;
    } else if (const int fd = std::get<int>(taken); fd >= 0) {
      opened = net::adopt_listener(s.ioc, a, fd, 64);
    } else {
      opened = net::open_listener(s.ioc, a, 64);
    }
    if (auto* e = std::get_if<std::string>(&opened)) {
      std::cerr << s.opt.config_path << ": admin.listen: " << *e << '\n';
      return 1;
    }
    s.admin = std::get<0>(std::move(opened));
  }
  unsigned n = cfg.workers != 0 ? cfg.workers : std::max(1u, std::thread::hardware_concurrency());
  const auto engine = choose_io(cfg.io, s.opt.config_path);
  if (!engine) {
    return 1;
  }
  for (unsigned i = 0; i < n; ++i) {
    s.workers.push_back(std::make_unique<worker>(i, s.current, s.access_file, *engine));
  }
  // Signals are set up before the workers run and before the ports file announces readiness,
  // so an early SIGTERM is never lost.
  asio::signal_set signals(s.ioc, SIGINT, SIGTERM, SIGHUP);
  signals.add(SIGUSR1);
  signals.add(SIGUSR2);
  asio::co_spawn(s.ioc, signal_loop(&s, &signals), observe::log_exception{"signal handling"});
  s.dns.start(s.ioc, cfg.dns.refresh);
  for (auto& w : s.workers) {
    w->start(s.listeners);
  }
  for (const auto& l : s.listeners) {
    observe::info("listening on " + l->slot->name + " (" +
                  std::string(config::name_of(l->cfg.mode)) + ", " + std::to_string(n) +
                  " workers)");
  }
  // The admin listener accepts last: /readyz answering means every public listener is open.
  setup_admin_context(s);
  if (s.admin) {
    asio::co_spawn(s.ioc, run_admin(s.admin->acceptor, s.admin_ctx),
                   observe::log_exception{"admin listener"});
    observe::info("admin listening on " + s.admin->slot->name);
  }
  if (observe::enabled(observe::level::debug)) {
    observe::debug("config " + s.opt.config_path + ": access_log " + describe(cfg.access_log) +
                   ", origin " + cfg.origin.url + ", cloudfront " + cfg.cloudfront.url + ", " +
                   std::to_string(cfg.validation.domains.size()) + " domain pattern(s), " +
                   std::to_string(cfg.tokens.size()) + " token(s)");
  }
  if (cfg.aws.enabled) {
    if (auto problem = start_poller(s); !problem.empty()) {
      std::cerr << s.opt.config_path << ": " << problem << '\n';
      return 1;
    }
    asio::co_spawn(s.ioc, watch_tenants(&s), observe::log_exception{"tenant watch"});
  }
  inherited.close_unused();
  if (!write_pid(s) || !write_ports_file(s)) {
    return 1;
  }
  const bool started_by_upgrade = inherited.from_upgrade();
  inherited.signal_ready();  // a process upgrading to us can drain now
  if (const int channel = inherited.take_handoff_channel(); channel >= 0) {
    asio::co_spawn(s.ioc, take_over_connections(&s, channel),
                   observe::log_exception{"connection take-over"});
  }
  announce_ready(s, started_by_upgrade);
  s.ioc.run();
  s.poller.reset();
  for (auto& w : s.workers) {
    w->stop_and_join();
  }
  s.workers.clear();
  if (!s.pid_file.empty()) {
    remove_pid_file_if_ours(s.pid_file, ::getpid());
  }
  auto summary = counters_summary();
  observe::info(summary.empty() ? "stopped" : "stopped (" + summary + ")");
  return 0;
}

}  // namespace wk::app
