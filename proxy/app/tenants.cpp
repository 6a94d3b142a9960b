#include "app/tenants.hpp"

#include "core/asio.hpp"
#include "observe/log.hpp"
#include "validation/events.hpp"
#include "validation/journey.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <array>
#include <random>

namespace wk::app {

namespace asio = boost::asio;
using sys_clock = std::chrono::system_clock;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// Counting

namespace {

// The outcomes kept as their own label value; anything else is "other" (bounded labels).
constexpr std::array<std::string_view, 16> known_outcomes = {"ok",
                                                             "network",
                                                             "Throttling",
                                                             "AccessDenied",
                                                             "NoSuchDistributionTenant",
                                                             "EntityNotFound",
                                                             "InvalidArgument",
                                                             "InternalError",
                                                             "ServiceUnavailable",
                                                             "SignatureDoesNotMatch",
                                                             "InvalidClientTokenId",
                                                             "ExpiredToken",
                                                             "MissingAuthenticationToken",
                                                             "UnrecognizedClientException",
                                                             "credentials",
                                                             "parse"};

std::string bounded_outcome(std::string_view outcome) {
  return std::find(known_outcomes.begin(), known_outcomes.end(), outcome) != known_outcomes.end()
             ? std::string(outcome)
             : std::string("other");
}

}  // namespace

void api_stats::count(std::string_view operation, std::string_view outcome) {
  const std::lock_guard lock(mu_);
  ++counts_[{std::string(operation), bounded_outcome(outcome)}];
}

std::map<std::pair<std::string, std::string>, std::uint64_t> api_stats::get() const {
  const std::lock_guard lock(mu_);
  return counts_;
}

// ---------------------------------------------------------------------------------------------
// The poller

std::variant<std::unique_ptr<tenant_poller>, std::string>
tenant_poller::start(const config::aws_api& cfg, std::string prefix, config::env_lookup env,
                     deliver_fn deliver) {
  auto settings = aws::settings_from_env(env, cfg.profile);
  if (auto* reason = std::get_if<std::string>(&settings)) {
    return "aws: " + *reason;
  }
  auto& s = std::get<aws::aws_settings>(settings);
  auto client = aws::http_client::make(s.ca_bundle);
  if (auto* reason = std::get_if<std::string>(&client)) {
    return "aws: " + *reason;
  }
  std::unique_ptr<tenant_poller> p(
      new tenant_poller(cfg, std::move(prefix), std::move(deliver),
                        std::get<std::shared_ptr<aws::http_client>>(std::move(client)),
                        std::move(s), std::move(env)));
  asio::co_spawn(p->ioc_, p->run(), asio::detached);
  p->thread_ = std::thread([q = p.get()] { q->ioc_.run(); });
  return p;
}

tenant_poller::tenant_poller(config::aws_api cfg, std::string prefix, deliver_fn deliver,
                             std::shared_ptr<aws::http_client> client, aws::aws_settings settings,
                             config::env_lookup env)
    : cfg_(std::move(cfg)), prefix_(std::move(prefix)), deliver_(std::move(deliver)),
      client_(client), settings_(settings),
      chain_(std::move(client), std::move(settings), std::move(env), cfg_.request_timeout) {}

tenant_poller::~tenant_poller() {
  ioc_.stop();
  if (thread_.joinable()) {
    thread_.join();
  }
  // The kept connections belong to ioc_, which is destroyed before client_ (declared later).
  client_->close_idle();
}

std::string tenant_poller::credentials_source() const {
  const std::lock_guard lock(mu_);
  return credentials_source_;
}

namespace {

// A uniformly random wait in [0, limit] ("full jitter"), so that callers throttled together do
// not come back together.
std::chrono::milliseconds jitter(std::chrono::milliseconds limit) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<std::int64_t> d(0, std::max<std::int64_t>(limit.count(), 0));
  return std::chrono::milliseconds(d(rng));
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  (void)co_await t.async_wait(core::nothrow);
}

}  // namespace

asio::awaitable<void> tenant_poller::run() {
  std::chrono::milliseconds backoff = 1s;
  for (;;) {
    const auto started = std::chrono::steady_clock::now();
    auto creds = co_await chain_.get();
    if (auto* reason = std::get_if<std::string>(&creds)) {
      {
        const std::lock_guard lock(mu_);
        credentials_source_ = "none: " + *reason;
      }
      stats_.count("credentials", "credentials");
      for (const auto& t : cfg_.tenants) {
        tenant_report r;
        r.tenant = t;
        r.at = sys_clock::now();
        r.error = "credentials: " + *reason;
        r.error_code = "credentials";
        deliver_(std::move(r));
      }
      co_await sleep_for(std::min(cfg_.poll_interval, backoff) + jitter(backoff / 4));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(cfg_.poll_interval));
      continue;
    }
    backoff = 1s;
    {
      const std::lock_guard lock(mu_);
      credentials_source_ = chain_.source();
    }
    co_await poll_round(std::get<aws::credentials>(creds));
    const auto next = started + cfg_.poll_interval;
    const auto now = std::chrono::steady_clock::now();
    if (next > now) {
      co_await sleep_for(std::chrono::duration_cast<std::chrono::milliseconds>(next - now));
    }
  }
}

asio::awaitable<void> tenant_poller::poll_round(const aws::credentials& creds) {
  struct round {
    std::size_t next = 0;
    std::size_t running = 0;
    asio::steady_timer done;
    explicit round(const asio::any_io_executor& ex)
        : done(ex, asio::steady_timer::time_point::max()) {}
  };
  const auto ex = co_await asio::this_coro::executor;
  auto state = std::make_shared<round>(ex);
  const std::size_t workers = std::min(concurrency, cfg_.tenants.size());
  if (workers == 0) {
    co_return;
  }
  state->running = workers;
  for (std::size_t k = 0; k < workers; ++k) {
    asio::co_spawn(
        ex,
        [this, state, creds]() -> asio::awaitable<void> {
          while (state->next < cfg_.tenants.size()) {
            const std::string& tenant = cfg_.tenants[state->next++];
            deliver_(co_await poll_tenant(tenant, creds));
          }
          if (--state->running == 0) {
            state->done.cancel();
          }
        },
        asio::detached);
  }
  (void)co_await state->done.async_wait(core::nothrow);
}

asio::awaitable<std::variant<std::string, aws::api_error>>
tenant_poller::call(std::string_view operation, aws::request r, const aws::credentials& creds) {
  constexpr int attempts = 4;
  const std::chrono::milliseconds cap =
      std::min(std::chrono::milliseconds(20'000), std::chrono::milliseconds(cfg_.poll_interval));
  aws::api_error err;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    aws::request signed_request = r;
    const std::string auth = aws::sign(signed_request, creds, aws::cloudfront_region,
                                       aws::cloudfront_service, sys_clock::now());
    aws::http_request h;
    h.method = signed_request.method;
    h.target = signed_request.path;
    h.headers = signed_request.headers;
    h.headers.emplace_back("Authorization", auth);
    h.body = signed_request.payload;
    auto answer = co_await client_->send(settings_.cloudfront, std::move(h), cfg_.request_timeout);
    if (auto* reason = std::get_if<std::string>(&answer)) {
      err = aws::api_error{0, "network", *reason};
    } else {
      auto& resp = std::get<aws::http_response>(answer);
      if (resp.status >= 200 && resp.status < 300) {
        stats_.count(operation, "ok");
        co_return std::move(resp.body);
      }
      err = aws::error_of(resp);
    }
    stats_.count(operation, err.code.empty() ? "other" : err.code);
    if (!err.retryable() || attempt + 1 == attempts) {
      break;
    }
    const auto limit = std::min(cap, std::chrono::milliseconds(500) * (1 << attempt));
    co_await sleep_for(jitter(limit));
  }
  co_return err;
}

asio::awaitable<tenant_report> tenant_poller::poll_tenant(const std::string& tenant,
                                                          const aws::credentials& creds) {
  tenant_report out;
  out.tenant = tenant;
  const aws::endpoint& cf = settings_.cloudfront;
  const auto fail = [&out](std::string_view operation, const aws::api_error& e) {
    out.error = std::string(operation) + ": " + e.text();
    out.error_code = e.code.empty() ? "HTTP " + std::to_string(e.http_status) : e.code;
  };
  const auto bad = [&out, this](std::string_view operation, const std::string& reason) {
    stats_.count(operation, "parse");
    out.error = std::string(operation) + ": unexpected answer: " + reason;
    out.error_code = "parse";
  };

  auto cert = co_await call("GetManagedCertificateDetails",
                            aws::get_managed_certificate_details(cf, tenant), creds);
  if (auto* e = std::get_if<aws::api_error>(&cert)) {
    fail("GetManagedCertificateDetails", *e);
    out.at = sys_clock::now();
    co_return out;
  }
  out.certificate = aws::parse_certificate_details(std::get<std::string>(cert), prefix_);
  if (!out.certificate.errors.empty()) {
    if (out.certificate.status.empty()) {
      bad("GetManagedCertificateDetails", out.certificate.errors.front());
      out.at = sys_clock::now();
      co_return out;
    }
    // A status without importable tokens (issued, or tokens CloudFront hosts itself): the
    // status counts, the tokens do not.
    out.certificate.tokens.clear();
  }
  aws::assign_tenant(out.certificate, tenant);
  out.have_certificate = true;

  auto dt = co_await call("GetDistributionTenant", aws::get_distribution_tenant(cf, tenant), creds);
  if (auto* e = std::get_if<aws::api_error>(&dt)) {
    fail("GetDistributionTenant", *e);
    out.at = sys_clock::now();
    co_return out;
  }
  auto parsed = aws::parse_distribution_tenant(std::get<std::string>(dt));
  if (auto* reason = std::get_if<std::string>(&parsed)) {
    bad("GetDistributionTenant", *reason);
    out.at = sys_clock::now();
    co_return out;
  }
  out.distribution = std::get<aws::distribution_tenant>(std::move(parsed));
  out.have_tenant = true;

  if (!out.distribution.connection_group_id.empty()) {
    auto cg =
        co_await call("GetConnectionGroup",
                      aws::get_connection_group(cf, out.distribution.connection_group_id), creds);
    if (auto* e = std::get_if<aws::api_error>(&cg)) {
      fail("GetConnectionGroup", *e);
      out.at = sys_clock::now();
      co_return out;
    }
    auto group = aws::parse_connection_group(std::get<std::string>(cg));
    if (auto* reason = std::get_if<std::string>(&group)) {
      bad("GetConnectionGroup", *reason);
      out.at = sys_clock::now();
      co_return out;
    }
    out.group = std::get<aws::connection_group>(std::move(group));
    out.have_group = true;
  }

  if (out.certificate.status == "issued") {
    auto v =
        co_await call("VerifyDnsConfiguration", aws::verify_dns_configuration(cf, tenant), creds);
    if (auto* e = std::get_if<aws::api_error>(&v)) {
      fail("VerifyDnsConfiguration", *e);
      out.at = sys_clock::now();
      co_return out;
    }
    auto dns = aws::parse_dns_configuration(std::get<std::string>(v));
    if (auto* reason = std::get_if<std::string>(&dns)) {
      bad("VerifyDnsConfiguration", *reason);
      out.at = sys_clock::now();
      co_return out;
    }
    out.dns = std::get<std::vector<aws::dns_configuration>>(std::move(dns));
    out.have_dns = true;
  }
  out.at = sys_clock::now();
  co_return out;
}

// ---------------------------------------------------------------------------------------------
// The main thread's side

void fold_report(tenant_record& record, tenant_report report) {
  record.last_error = report.error;
  if (report.error.empty()) {
    record.last_success = report.at;
  }
  tenant_report& last = record.last;
  last.tenant = report.tenant;
  last.at = report.at;
  last.error = report.error;
  last.error_code = report.error_code;
  if (report.have_certificate) {
    auto tokens = std::move(last.certificate.tokens);
    last.certificate = std::move(report.certificate);
    if (last.certificate.tokens.empty()) {
      last.certificate.tokens = std::move(tokens);  // the last good tokens stay
    }
    last.have_certificate = true;
  }
  if (report.have_tenant) {
    last.distribution = std::move(report.distribution);
    last.have_tenant = true;
  }
  if (report.have_group) {
    last.group = std::move(report.group);
    last.have_group = true;
  }
  if (report.have_dns) {
    last.dns = std::move(report.dns);
    last.have_dns = true;
  }
}

std::vector<config::api_tenant> api_tenants(const std::map<std::string, tenant_record>& records) {
  std::vector<config::api_tenant> out;
  for (const auto& [name, r] : records) {
    config::api_tenant t;
    t.tenant = name;
    for (const auto& d : r.last.distribution.domains) {
      t.domains.push_back(d.domain);
    }
    t.tokens = r.last.certificate.tokens;
    if (!t.domains.empty() || !t.tokens.empty()) {
      out.push_back(std::move(t));
    }
  }
  return out;
}

std::vector<status_snapshot::tenant_state>
tenant_views(const std::vector<std::string>& order,
             const std::map<std::string, tenant_record>& records, const runtime::snapshot& rt,
             sys_clock::time_point now, sys_clock::time_point watching_since) {
  const auto events = validation::events().snapshot();
  std::vector<status_snapshot::tenant_state> out;
  for (const std::string& name : order) {
    status_snapshot::tenant_state t;
    t.tenant = name;
    const auto it = records.find(name);
    if (it == records.end()) {
      t.last_error = "";
      out.push_back(std::move(t));
      continue;
    }
    const tenant_record& r = it->second;
    t.name = r.last.distribution.name;
    t.certificate_status = r.last.certificate.status;
    t.token_host = r.last.certificate.token_host;
    t.routing_endpoint = r.last.group.routing_endpoint;
    t.last_success = r.last_success;
    t.last_error = r.last_error;
    std::vector<std::string> domains;
    for (const auto& d : r.last.distribution.domains) {
      domains.push_back(d.domain);
    }
    for (const auto& k : r.last.certificate.tokens) {
      if (std::find(domains.begin(), domains.end(), k.domain) == domains.end()) {
        domains.push_back(k.domain);
      }
    }
    for (const std::string& domain : domains) {
      status_snapshot::tenant_domain d;
      d.domain = domain;
      for (const auto& k : rt.cfg->tokens) {
        if (k.domain == domain && k.tenant == name) {
          d.token_files.push_back(k.file);
        }
      }
      validation::journey_input in;
      in.domain = domain;
      in.certificate_status = r.last.have_certificate ? r.last.certificate.status : "";
      for (const auto& c : r.last.dns) {
        if (c.domain == domain) {
          d.dns_status = c.status;
          d.dns_reason = c.reason;
        }
      }
      in.dns_status = d.dns_status;
      in.routing_endpoint = t.routing_endpoint;
      // The CA's latest fetch of one of this domain's tokens through this proxy.
      if (const auto e = events.find(domain); e != events.end()) {
        const auto& list = e->second;
        for (std::size_t i = list.size(); i-- > 0;) {  // newest first
          const auto& ev = list[i];
          const bool token = std::any_of(
              rt.cfg->tokens.begin(), rt.cfg->tokens.end(),
              [&](const config::token& k) { return k.domain == domain && k.file == ev.file; });
          if (token && ev.action != "origin") {
            in.last_fetch = ev.time;
            in.last_fetch_status = ev.status;
            d.last_fetch = ev.time;
            d.last_fetch_status = ev.status;
            break;
          }
        }
      }
      if (rt.activity) {
        in.last_request = rt.activity->last(domain);
        if (in.last_request) {
          d.last_request = *in.last_request;
        }
      }
      in.now = now;
      in.watching_since = watching_since;
      in.quiet_period = rt.cfg->aws.quiet_period;
      const auto j = validation::journey_of(in);
      d.stage = std::string(validation::name_of(j.stage));
      d.sentence = j.sentence;
      d.dns_record = j.dns_record;
      t.domains.push_back(std::move(d));
    }
    out.push_back(std::move(t));
  }
  return out;
}

namespace {

std::string label_value(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string tenant_metrics(const std::vector<status_snapshot::tenant_state>& views,
                           const api_stats* stats) {
  std::string out;
  out += "# HELP wkproxy_tenant_up 1 when the last poll of the tenant's CloudFront API succeeded.\n"
         "# TYPE wkproxy_tenant_up gauge\n";
  for (const auto& t : views) {
    out += "wkproxy_tenant_up{tenant=\"" + label_value(t.tenant) + "\"} " +
           (t.last_error.empty() && t.last_success.time_since_epoch().count() != 0 ? "1" : "0") +
           "\n";
  }
  out += "# HELP wkproxy_tenant_last_success_timestamp_seconds When the tenant's last poll "
         "succeeded (0: never).\n# TYPE wkproxy_tenant_last_success_timestamp_seconds gauge\n";
  for (const auto& t : views) {
    out += "wkproxy_tenant_last_success_timestamp_seconds{tenant=\"" + label_value(t.tenant) +
           "\"} " +
           std::to_string(
               std::chrono::duration_cast<std::chrono::seconds>(t.last_success.time_since_epoch())
                   .count()) +
           "\n";
  }
  out += "# HELP wkproxy_tenant_certificate_issued 1 once the tenant's certificate is issued.\n"
         "# TYPE wkproxy_tenant_certificate_issued gauge\n";
  for (const auto& t : views) {
    out += "wkproxy_tenant_certificate_issued{tenant=\"" + label_value(t.tenant) + "\"} " +
           (t.certificate_status == "issued" ? "1" : "0") + "\n";
  }
  out += "# HELP wkproxy_tenant_domain_stage The stage of each tenant domain's journey (1 for the "
         "current stage).\n# TYPE wkproxy_tenant_domain_stage gauge\n";
  std::size_t series = 0;
  for (const auto& t : views) {
    for (const auto& d : t.domains) {
      if (series++ >= max_domain_series) {
        break;
      }
      out += "wkproxy_tenant_domain_stage{tenant=\"" + label_value(t.tenant) + "\",domain=\"" +
             label_value(d.domain) + "\",stage=\"" + label_value(d.stage) + "\"} 1\n";
    }
  }
  if (stats != nullptr) {
    out += "# HELP wkproxy_aws_api_requests_total AWS API calls by operation and outcome (ok, an "
           "AWS error code, network).\n# TYPE wkproxy_aws_api_requests_total counter\n";
    for (const auto& [key, n] : stats->get()) {
      out += "wkproxy_aws_api_requests_total{operation=\"" + label_value(key.first) +
             "\",outcome=\"" + label_value(key.second) + "\"} " + std::to_string(n) + "\n";
    }
  }
  return out;
}

}  // namespace wk::app
