#include "app/server.hpp"

#include "app/runtime.hpp"
#include "app/worker.hpp"
#include "config/load.hpp"
#include "http/failure.hpp"
#include "net/listener.hpp"
#include "observe/counters.hpp"
#include "observe/log.hpp"
#include "validation/events.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

namespace wk::app {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

// "errors: bad_request=3 header_timeout=1; limits: pipelined=2", or "" when nothing was counted.
std::string counters_summary() {
  const auto& c = observe::process_counters();
  std::string errors;
  for (std::size_t i = 1; i < static_cast<std::size_t>(http::failure::count_); ++i) {
    if (auto n = c.failures[i].load(std::memory_order_relaxed); n > 0) {
      errors += (errors.empty() ? "" : " ") +
                std::string(http::name_of(static_cast<http::failure>(i))) + "=" + std::to_string(n);
    }
  }
  static constexpr std::string_view limit_names[] = {"connections", "requests_per_connection",
                                                     "pipelined"};
  static_assert(std::size(limit_names) == static_cast<std::size_t>(observe::limit_event::count_));
  std::string limits;
  for (std::size_t i = 0; i < c.limits.size(); ++i) {
    if (auto n = c.limits[i].load(std::memory_order_relaxed); n > 0) {
      limits += (limits.empty() ? "" : " ") + std::string(limit_names[i]) + "=" + std::to_string(n);
    }
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
// How long a graceful stop waits for busy connections before closing them.
constexpr std::chrono::seconds drain_timeout{30};

struct server_state {
  server_options opt;
  asio::io_context ioc{1};
  upstream::resolver_registry dns;
  std::shared_ptr<const runtime> current;
  std::vector<std::unique_ptr<net::listener_socket>> listeners;
  std::vector<std::unique_ptr<worker>> workers;
  bool stopping = false;
};

std::shared_ptr<const runtime> load_runtime(server_state& s, bool reporting_only_to_log) {
  auto loaded = config::load_file(s.opt.config_path, config::process_env());
  if (!loaded.errors.empty()) {
    for (const auto& e : loaded.errors) {
      if (reporting_only_to_log) {
        observe::error("reload refused: " + e.to_string());
      } else {
        std::cerr << e.to_string() << '\n';
      }
    }
    return nullptr;
  }
  std::vector<std::string> warnings;
  auto built = build_runtime(std::move(*loaded.cfg), s.dns, warnings);
  for (const auto& w : warnings) {
    observe::warn(s.opt.config_path + ": " + w);
  }
  if (auto* errors = std::get_if<std::vector<std::string>>(&built)) {
    for (const auto& e : *errors) {
      if (reporting_only_to_log) {
        observe::error("reload refused: " + s.opt.config_path + ": " + e);
      } else {
        std::cerr << s.opt.config_path << ": " << e << '\n';
      }
    }
    return nullptr;
  }
  auto rt = std::get<0>(std::move(built));
  const auto& v = rt->cfg->validation;
  if (auto problem = validation::events().configure(v.events, v.events_per_domain);
      !problem.empty()) {
    if (reporting_only_to_log) {
      observe::error("reload refused: " + problem);
    } else {
      std::cerr << s.opt.config_path << ": " << problem << '\n';
    }
    return nullptr;
  }
  return rt;
}

bool write_ports_file(const server_state& s) {
  if (s.opt.ports_file.empty()) {
    return true;
  }
  json::array listen;
  for (const auto& l : s.listeners) {
    listen.emplace_back(net::endpoint_string(l->bound));
  }
  json::object doc;
  doc["listen"] = std::move(listen);
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

void reload(server_state& s) {
  auto rt = load_runtime(s, true);
  if (!rt) {
    observe::error("reload of " + s.opt.config_path + " failed; the running config stays");
    return;
  }
  std::vector<std::string> before;
  for (const auto& l : s.current->cfg->listen) {
    before.push_back(l.address);
  }
  std::vector<std::string> after;
  for (const auto& l : rt->cfg->listen) {
    after.push_back(l.address);
  }
  if (before != after) {
    observe::warn("reload: listener changes take effect at the next restart");
  }
  s.dns.set_interval(rt->cfg->dns.refresh);
  for (auto& w : s.workers) {
    w->publish(rt);
  }
  s.current = std::move(rt);
  s.dns.prune();
  observe::info("reloaded " + s.opt.config_path);
}

asio::awaitable<void> drain_and_stop(server_state* s) {
  observe::info("stopping: draining connections");
  for (auto& w : s->workers) {
    w->begin_stop();
  }
  asio::steady_timer timer(co_await asio::this_coro::executor);
  auto deadline = std::chrono::steady_clock::now() + drain_timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::size_t active = 0;
    for (auto& w : s->workers) {
      active += w->active();
    }
    if (active == 0) {
      break;
    }
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(nothrow);
  }
  s->ioc.stop();
}

asio::awaitable<void> signal_loop(server_state* s) {
  asio::signal_set signals(s->ioc, SIGINT, SIGTERM, SIGHUP);
  for (;;) {
    auto [ec, sig] = co_await signals.async_wait(nothrow);
    if (ec) {
      co_return;
    }
    if (sig == SIGHUP) {
      if (!s->stopping) {
        reload(*s);
      }
      continue;
    }
    if (s->stopping) {
      observe::warn("second stop signal: exiting now");
      s->ioc.stop();
      co_return;
    }
    s->stopping = true;
    asio::co_spawn(s->ioc, drain_and_stop(s), observe::log_exception{"drain"});
  }
}

}  // namespace

int run_server(const server_options& opt) {
  std::signal(SIGPIPE, SIG_IGN);
  server_state s;
  s.opt = opt;
  s.current = load_runtime(s, false);
  if (!s.current) {
    return 1;
  }
  const auto& cfg = *s.current->cfg;
  for (const auto& l : cfg.listen) {
    auto opened = net::open_listener(s.ioc, l, cfg.limits.max_connections);
    if (auto* e = std::get_if<std::string>(&opened)) {
      std::cerr << s.opt.config_path << ": listen: " << *e << '\n';
      return 1;
    }
    s.listeners.push_back(std::get<0>(std::move(opened)));
  }
  unsigned n = cfg.workers != 0 ? cfg.workers : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) {
    s.workers.push_back(std::make_unique<worker>(i, s.current));
  }
  // Signals are set up before the workers run, so an early SIGTERM is never lost.
  asio::co_spawn(s.ioc, signal_loop(&s), observe::log_exception{"signal handling"});
  s.dns.start(s.ioc, cfg.dns.refresh);
  for (auto& w : s.workers) {
    w->start(s.listeners);
  }
  for (const auto& l : s.listeners) {
    observe::info("listening on " + l->slot->name + " (" + std::to_string(n) + " workers)");
  }
  if (!write_ports_file(s)) {
    return 1;
  }
  s.ioc.run();
  for (auto& w : s.workers) {
    w->stop_and_join();
  }
  s.workers.clear();
  auto summary = counters_summary();
  observe::info(summary.empty() ? "stopped" : "stopped (" + summary + ")");
  return 0;
}

}  // namespace wk::app
