#pragma once
// The CloudFront API client at work (aws: in the config): a thread of its own polls each listed
// distribution tenant, and the main thread turns what it learns into tokens served at once (a
// new snapshot, no file written, no reload) and into each domain's journey on /status,
// /status.json and /metrics. The workers never wait for AWS: they only ever see a finished
// snapshot.
//
// One poll of a tenant: GetManagedCertificateDetails (its tokens and certificate status),
// GetDistributionTenant (its domains and connection group), GetConnectionGroup (the routing
// endpoint, the CNAME target) and, once the certificate is issued, VerifyDnsConfiguration.
// Rounds run every aws.poll_interval, at most `concurrency` tenants at a time; a throttled or
// failed call is retried with exponential backoff and full jitter, and after that the tenant
// keeps its last good answer until the next round.

#include "app/status_page.hpp"
#include "aws/certificate_details.hpp"
#include "aws/cloudfront.hpp"
#include "aws/credential_chain.hpp"
#include "config/config.hpp"
#include "config/tenant_merge.hpp"
#include "runtime/runtime.hpp"

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <variant>
#include <vector>

namespace wk::app {

// What the API said about one tenant in one poll. Parts that could not be read are left empty
// (the main thread keeps the last good ones).
struct tenant_report {
  std::string tenant;  // as listed in aws.tenants
  std::chrono::system_clock::time_point at;
  std::string error;       // "" when every call succeeded
  std::string error_code;  // AWS's code of the first failure ("Throttling"), or "network"
  bool have_certificate = false;
  aws::certificate_details certificate;  // tokens assigned to `tenant`
  bool have_tenant = false;
  aws::distribution_tenant distribution;
  bool have_group = false;
  aws::connection_group group;
  bool have_dns = false;
  std::vector<aws::dns_configuration> dns;
};

// The last good of everything, per tenant, on the main thread.
struct tenant_record {
  tenant_report last;      // the merged view
  std::string last_error;  // of the latest poll
  std::chrono::system_clock::time_point last_success{};
  std::map<std::string, std::string, std::less<>> stages;  // domain -> stage, for transitions
};

// Counts of API calls by operation and outcome ("ok", an AWS error code, "network"), bounded:
// codes outside a known list count as "other".
class api_stats {
public:
  void count(std::string_view operation, std::string_view outcome);
  std::map<std::pair<std::string, std::string>, std::uint64_t> get() const;

private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> counts_;
};

class tenant_poller {
public:
  using deliver_fn = std::function<void(tenant_report)>;  // called on the poller's thread
  static constexpr std::size_t concurrency = 8;

  // Starts polling `cfg.tenants`. The reason when the environment's AWS settings are unusable
  // (a bad AWS_ENDPOINT_URL*, an unreadable AWS_CA_BUNDLE).
  static std::variant<std::unique_ptr<tenant_poller>, std::string>
  start(const config::aws_api& cfg, std::string prefix, config::env_lookup env, deliver_fn deliver);

  tenant_poller(const tenant_poller&) = delete;
  tenant_poller& operator=(const tenant_poller&) = delete;
  ~tenant_poller();  // stops the thread; calls in flight are abandoned

  // Which credential step is in use ("environment", "profile x (AssumeRole ...)"), or the
  // reason there are none; any thread.
  std::string credentials_source() const;
  const api_stats& stats() const { return stats_; }
  const config::aws_api& settings() const { return cfg_; }

private:
  tenant_poller(config::aws_api cfg, std::string prefix, deliver_fn deliver,
                std::shared_ptr<aws::http_client> client, aws::aws_settings settings,
                config::env_lookup env);
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<void> poll_round(const aws::credentials& creds);
  boost::asio::awaitable<tenant_report> poll_tenant(const std::string& tenant,
                                                    const aws::credentials& creds);
  // One signed CloudFront call with retries; the 2xx body, or the failure.
  boost::asio::awaitable<std::variant<std::string, aws::api_error>>
  call(std::string_view operation, aws::request r, const aws::credentials& creds);

  config::aws_api cfg_;
  std::string prefix_;
  deliver_fn deliver_;
  std::shared_ptr<aws::http_client> client_;
  aws::aws_settings settings_;
  aws::credential_chain chain_;
  api_stats stats_;
  mutable std::mutex mu_;
  std::string credentials_source_;
  boost::asio::io_context ioc_{1};
  std::thread thread_;
};

// Folds a poll's report into the record: the parts it has replace the old ones.
void fold_report(tenant_record& record, tenant_report report);

// The tenants as the merge into a config wants them: domains and tokens per tenant.
std::vector<config::api_tenant> api_tenants(const std::map<std::string, tenant_record>& records);

// The status page's view of the tenants, in `order` (aws.tenants), with each domain's journey.
std::vector<status_snapshot::tenant_state>
tenant_views(const std::vector<std::string>& order,
             const std::map<std::string, tenant_record>& records, const runtime::snapshot& rt,
             std::chrono::system_clock::time_point now,
             std::chrono::system_clock::time_point watching_since);

// Prometheus text for the tenants and the API calls:
//   wkproxy_tenant_up{tenant} 1 when its last poll succeeded;
//   wkproxy_tenant_last_success_timestamp_seconds{tenant};
//   wkproxy_tenant_certificate_issued{tenant} 1 once issued;
//   wkproxy_tenant_domain_stage{tenant,domain,stage} 1 (one series per domain, the current stage);
//   wkproxy_aws_api_requests_total{operation,outcome}.
// Labels are bounded by the configuration (at most max_domain_series domains in all).
inline constexpr std::size_t max_domain_series = 2000;
std::string tenant_metrics(const std::vector<status_snapshot::tenant_state>& views,
                           const api_stats* stats);

}  // namespace wk::app
