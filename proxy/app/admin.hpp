#pragma once
// The admin listener: a small HTTP/1.1 server on its own address (loopback by default), on the
// main thread, apart from the public listeners and the workers. Endpoints:
//   /healthz      200 while the process runs
//   /readyz       200 when serving; 503 while draining (before listeners open it is not up)
//   /metrics      Prometheus text format: worker metrics summed, process counters
//   /status       the validation status page (HTML); /status.json the same as JSON
//   /config       the effective configuration as JSON, secrets redacted
// With admin.token set, everything but /healthz and /readyz needs "Authorization: Bearer".
// Without it, everything but the probes needs a Host that no web page can rebind (issue 18,
// finding 9: a page whose name is re-pointed at 127.0.0.1 reaches a loopback listener from the
// browser, but always with its own name as Host): an IP literal or localhost; anything else is
// answered 403. With a token, the token decides whatever the Host (a page cannot know it).

#include "app/status_page.hpp"
#include "observe/metrics.hpp"
#include "runtime/runtime.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wk::app {

// What the endpoints read, provided by the server. Used on the main thread only.
struct admin_context {
  std::string version;
  std::string revision;
  std::chrono::system_clock::time_point started;
  std::function<std::shared_ptr<const runtime::snapshot>()> current;
  std::function<bool()> draining;
  std::function<std::vector<const observe::worker_metrics*>()> workers;
  std::function<std::vector<std::string>()> listener_labels;  // metrics label per index
  // Per public listener: its bound address, mode and open connections.
  struct listener_state {
    std::string address;
    std::string mode;
    std::size_t open = 0;
  };
  std::function<std::vector<listener_state>()> listeners;
  std::chrono::system_clock::time_point last_reload;    // start, or the last SIGHUP
  std::chrono::system_clock::time_point config_loaded;  // when the running config was loaded
  bool last_reload_ok = true;
  // aws: the tenants' journeys, the credential step in use and the API call counts; empty
  // functions (or empty answers) without aws:.
  std::function<std::vector<status_snapshot::tenant_state>()> tenants;
  std::function<std::string()> credentials_source;
  std::function<const class api_stats*()> api_stats;
};

// Accepts and serves admin connections until the acceptor is closed.
boost::asio::awaitable<void> run_admin(boost::asio::ip::tcp::acceptor& acceptor,
                                       const admin_context& ctx);

// Whether a Host header value names this machine in a way DNS cannot re-point: an IPv4 literal
// (dotted quad), a bracketed IPv6 literal or "localhost" (any case), each with an optional
// numeric port.
bool unrebindable_host(std::string_view host);

// The effective configuration as JSON, with secrets (admin.token) redacted.
boost::json::object config_json(const config::config& cfg);

}  // namespace wk::app
