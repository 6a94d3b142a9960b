#include "aws/fetch.hpp"

#include "aws/credential_chain.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

namespace wk::aws {

namespace asio = boost::asio;

namespace {

asio::awaitable<fetched> fetch(std::shared_ptr<http_client> client, aws_settings settings,
                               config::env_lookup env, std::string tenant,
                               std::chrono::milliseconds timeout) {
  credential_chain chain(client, settings, std::move(env), timeout);
  auto creds = co_await chain.get();
  fetched out;
  if (auto* reason = std::get_if<std::string>(&creds)) {
    out.text = "credentials: " + *reason;
    co_return out;
  }
  out.source = chain.source();
  request r = get_managed_certificate_details(settings.cloudfront, tenant);
  const std::string auth = sign(r, std::get<credentials>(creds), cloudfront_region,
                                cloudfront_service, std::chrono::system_clock::now());
  http_request h;
  h.method = r.method;
  h.target = r.path;
  h.headers = r.headers;
  h.headers.emplace_back("Authorization", auth);
  auto answer = co_await client->send(settings.cloudfront, std::move(h), timeout);
  if (auto* reason = std::get_if<std::string>(&answer)) {
    out.text = "GetManagedCertificateDetails: " + *reason;
    co_return out;
  }
  auto& resp = std::get<http_response>(answer);
  if (resp.status < 200 || resp.status >= 300) {
    out.text = "GetManagedCertificateDetails: " + error_of(resp).text();
    co_return out;
  }
  out.ok = true;
  out.text = std::move(resp.body);
  co_return out;
}

}  // namespace

fetched fetch_certificate_details(const config::env_lookup& env, std::string_view tenant,
                                  std::chrono::milliseconds timeout) {
  auto settings = settings_from_env(env, "");
  if (auto* reason = std::get_if<std::string>(&settings)) {
    return {false, *reason, {}};
  }
  auto client = http_client::make(std::get<aws_settings>(settings).ca_bundle);
  if (auto* reason = std::get_if<std::string>(&client)) {
    return {false, *reason, {}};
  }
  asio::io_context ioc;
  auto f = asio::co_spawn(ioc,
                          fetch(std::get<std::shared_ptr<http_client>>(std::move(client)),
                                std::get<aws_settings>(std::move(settings)), env,
                                std::string(tenant), timeout),
                          asio::use_future);
  ioc.run();
  return f.get();
}

}  // namespace wk::aws
