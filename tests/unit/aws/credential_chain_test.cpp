// The credential chain's order (environment, shared files, web identity, container, instance
// metadata) and its caching, run for real on an io_context. Steps that need the network point at
// a closed loopback port, so the error names the step that was reached; the integration tests
// (test_aws_tenants.py) run every step against the stand-in AWS.

#include "aws/credential_chain.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_future.hpp>

#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

namespace a = wk::aws;
namespace asio = boost::asio;

namespace {

using vars = std::map<std::string, std::string, std::less<>>;

// A loopback port nothing listens on: bound, then closed.
std::string closed_port_url(std::string_view scheme) {
  asio::io_context ioc;
  asio::ip::tcp::acceptor acc(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = acc.local_endpoint().port();
  acc.close();
  return std::string(scheme) + "://127.0.0.1:" + std::to_string(port);
}

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    char tmpl[] = "/tmp/wkproxy-creds-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return (path / name).string();
  }
};

// One get() on a chain over `v` (every endpoint at a closed port unless `v` says otherwise).
std::variant<a::credentials, std::string> get_once(vars v, std::string* source = nullptr) {
  const std::string closed = closed_port_url("http");
  v.try_emplace("AWS_ENDPOINT_URL", closed);
  v.try_emplace("AWS_EC2_METADATA_SERVICE_ENDPOINT", closed);
  v.try_emplace("HOME", "/nonexistent");
  const wk::config::env_lookup env = [v](std::string_view n) -> std::optional<std::string> {
    const auto it = v.find(n);
    return it == v.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  auto settings = a::settings_from_env(env, "");
  REQUIRE(std::holds_alternative<a::aws_settings>(settings));
  auto client = a::http_client::make("");
  REQUIRE(std::holds_alternative<std::shared_ptr<a::http_client>>(client));
  a::credential_chain chain(std::get<std::shared_ptr<a::http_client>>(client),
                            std::get<a::aws_settings>(settings), env,
                            std::chrono::milliseconds(2000));
  asio::io_context ioc;
  auto f = asio::co_spawn(ioc, chain.get(), asio::use_future);
  ioc.run();
  auto r = f.get();
  if (source != nullptr) {
    *source = chain.source();
  }
  return r;
}

std::string error_of(const std::variant<a::credentials, std::string>& r) {
  return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : "(credentials)";
}

}  // namespace

TEST_CASE("chain: the environment comes first") {
  temp_dir d;
  const auto creds = d.write("credentials", "[default]\naws_access_key_id = FILEKEY\n"
                                            "aws_secret_access_key = filesecret\n");
  std::string source;
  const auto r = get_once({{"AWS_ACCESS_KEY_ID", "ENVKEY"},
                           {"AWS_SECRET_ACCESS_KEY", "envsecret"},
                           {"AWS_SHARED_CREDENTIALS_FILE", creds}},
                          &source);
  REQUIRE(std::holds_alternative<a::credentials>(r));
  CHECK(std::get<a::credentials>(r).access_key_id == "ENVKEY");
  CHECK(source == "environment");
}

TEST_CASE("chain: then the shared files, with AWS_PROFILE") {
  temp_dir d;
  const auto creds =
      d.write("credentials", "[default]\naws_access_key_id = DEFKEY\n"
                             "aws_secret_access_key = s\n[ops]\n"
                             "aws_access_key_id = OPSKEY\naws_secret_access_key = t\n");
  std::string source;
  auto r = get_once({{"AWS_SHARED_CREDENTIALS_FILE", creds},
                     {"AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent"},
                     {"AWS_ROLE_ARN", "arn:aws:iam::1:role/r"}},
                    &source);
  REQUIRE(std::holds_alternative<a::credentials>(r));
  CHECK(std::get<a::credentials>(r).access_key_id == "DEFKEY");
  CHECK(source == "profile default");
  r = get_once({{"AWS_SHARED_CREDENTIALS_FILE", creds}, {"AWS_PROFILE", "ops"}}, &source);
  REQUIRE(std::holds_alternative<a::credentials>(r));
  CHECK(std::get<a::credentials>(r).access_key_id == "OPSKEY");
  // A named profile that does not exist is an error, not a reason to look further.
  r = get_once({{"AWS_SHARED_CREDENTIALS_FILE", creds}, {"AWS_PROFILE", "nope"}});
  CHECK(error_of(r).find("no profile nope") != std::string::npos);
}

TEST_CASE("chain: a role profile goes to STS AssumeRole with its source profile's keys") {
  temp_dir d;
  const auto config = d.write("config", "[profile deploy]\nrole_arn = arn:aws:iam::1:role/wk\n"
                                        "source_profile = base\n[profile base]\n"
                                        "aws_access_key_id = BASE\naws_secret_access_key = s\n");
  const auto r = get_once({{"AWS_CONFIG_FILE", config}, {"AWS_PROFILE", "deploy"}});
  CHECK(error_of(r).starts_with("STS AssumeRole arn:aws:iam::1:role/wk: connect to"));
}

TEST_CASE("chain: web identity from the environment before container credentials") {
  temp_dir d;
  const auto token = d.write("token", "eyJ.token\n");
  auto r = get_once({{"AWS_WEB_IDENTITY_TOKEN_FILE", token},
                     {"AWS_ROLE_ARN", "arn:aws:iam::1:role/irsa"},
                     {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/creds"}});
  CHECK(error_of(r).starts_with("STS AssumeRoleWithWebIdentity arn:aws:iam::1:role/irsa:"));
  r = get_once({{"AWS_CONTAINER_CREDENTIALS_FULL_URI", closed_port_url("http") + "/creds"}});
  CHECK(error_of(r).starts_with("container credentials: connect to"));
  // Plain http only to the loopback and the agents' addresses, as the SDKs allow.
  r = get_once({{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://192.0.2.1/creds"}});
  CHECK(error_of(r).find("plain http is allowed only") != std::string::npos);
}

TEST_CASE("chain: instance metadata last, unless disabled") {
  auto r = get_once({});
  CHECK(error_of(r).starts_with("instance metadata: connect to"));
  r = get_once({{"AWS_EC2_METADATA_DISABLED", "true"}});
  CHECK(error_of(r).starts_with("no credentials"));
}

TEST_CASE("chain: static credentials are cached, never refreshed") {
  const wk::config::env_lookup env = [](std::string_view n) -> std::optional<std::string> {
    if (n == "AWS_ACCESS_KEY_ID") {
      return "K";
    }
    if (n == "AWS_SECRET_ACCESS_KEY") {
      return "S";
    }
    return std::nullopt;
  };
  auto client = std::get<std::shared_ptr<a::http_client>>(a::http_client::make(""));
  a::credential_chain chain(client, std::get<a::aws_settings>(a::settings_from_env(env, "")), env,
                            std::chrono::milliseconds(1000));
  asio::io_context ioc;
  auto first = asio::co_spawn(ioc, chain.get(), asio::use_future);
  ioc.run();
  CHECK(std::holds_alternative<a::credentials>(first.get()));
  CHECK(!chain.expires());
}
