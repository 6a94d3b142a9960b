#include "aws/credential_chain.hpp"

#include "aws/xml.hpp"
#include "core/ascii.hpp"

#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>
#include <boost/property_tree/ptree.hpp>

#include <ctime>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace wk::aws {

namespace asio = boost::asio;
namespace json = boost::json;
namespace pt = boost::property_tree;
using namespace std::chrono_literals;

namespace {

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return std::nullopt;
  }
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string env_or(const config::env_lookup& env, const char* name,
                   const std::string& fallback = {}) {
  auto v = env(name);
  return v && !v->empty() ? *v : fallback;
}

// application/x-www-form-urlencoded, with %20 for spaces (STS accepts both forms).
std::string form(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out;
  for (const auto& [n, v] : fields) {
    out += (out.empty() ? "" : "&") + uri_encode(n, false) + "=" + uri_encode(v, false);
  }
  return out;
}

// Built outside the coroutines: GCC 12 fails on aggregate initialization from string literals
// inside a coroutine ("array used as initializer").
http_request make_request(std::string method, std::string target,
                          std::vector<std::pair<std::string, std::string>> headers,
                          std::string body) {
  http_request r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.headers = std::move(headers);
  r.body = std::move(body);
  return r;
}

std::vector<std::pair<std::string, std::string>> one_header(std::string name, std::string value) {
  std::vector<std::pair<std::string, std::string>> out;
  out.emplace_back(std::move(name), std::move(value));
  return out;
}

std::string session_name() {
  return "wkproxy-" + std::to_string(::getpid()) + "-" +
         std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count());
}

}  // namespace

std::variant<aws_settings, std::string> settings_from_env(const config::env_lookup& env,
                                                          std::string_view profile) {
  aws_settings s;
  const std::string common = env_or(env, "AWS_ENDPOINT_URL");
  const auto pick = [&](const char* name, const std::string& fallback, endpoint& out,
                        std::string& error) {
    const std::string url = env_or(env, name, common.empty() ? fallback : common);
    auto parsed = parse_endpoint(url);
    if (auto* reason = std::get_if<std::string>(&parsed)) {
      error = std::string(name) + ": " + *reason;
      return;
    }
    out = std::get<endpoint>(std::move(parsed));
  };
  std::string error;
  pick("AWS_ENDPOINT_URL_CLOUDFRONT", std::string(default_cloudfront_endpoint), s.cloudfront,
       error);
  // STS: regional when a region is set (as the SDKs do now), else the global endpoint.
  const std::string region = env_or(env, "AWS_REGION", env_or(env, "AWS_DEFAULT_REGION"));
  if (!region.empty()) {
    s.sts_region = region;
  }
  pick("AWS_ENDPOINT_URL_STS",
       region.empty() ? "https://sts.amazonaws.com" : "https://sts." + region + ".amazonaws.com",
       s.sts, error);
  const std::string imds =
      env_or(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://169.254.169.254");
  if (auto parsed = parse_endpoint(imds); auto* e = std::get_if<endpoint>(&parsed)) {
    s.imds = *e;
  } else {
    error = "AWS_EC2_METADATA_SERVICE_ENDPOINT: " + std::get<std::string>(parsed);
  }
  s.imds_disabled = core::iequals(env_or(env, "AWS_EC2_METADATA_DISABLED"), "true");
  s.ca_bundle = env_or(env, "AWS_CA_BUNDLE");
  s.profile = std::string(profile);
  if (!error.empty()) {
    return error;
  }
  return s;
}

std::optional<std::chrono::system_clock::time_point> parse_iso8601(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.fff...](Z|+00:00)
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != 't') || text[13] != ':' || text[16] != ':') {
    return std::nullopt;
  }
  const auto num = [&](std::size_t at, std::size_t n) -> int {
    int v = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (text[i] < '0' || text[i] > '9') {
        return -1;
      }
      v = v * 10 + (text[i] - '0');
    }
    return v;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(5, 2) - 1;
  tm.tm_mday = num(8, 2);
  tm.tm_hour = num(11, 2);
  tm.tm_min = num(14, 2);
  tm.tm_sec = num(17, 2);
  if (tm.tm_year < 0 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
      tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 ||
      tm.tm_sec > 60) {
    return std::nullopt;
  }
  std::size_t i = 19;
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      ++i;
    }
  }
  const std::string_view zone = text.substr(i);
  if (zone != "Z" && zone != "z" && zone != "+00:00") {
    return std::nullopt;
  }
  return std::chrono::system_clock::from_time_t(::timegm(&tm));
}

std::variant<temporary_credentials, std::string> parse_sts_credentials(std::string_view xml) {
  std::vector<std::string> errors;
  const auto doc = parse_xml(xml, "STS answers nest 4 deep", errors);
  if (!doc) {
    return errors.front();
  }
  const root_element root = root_of(*doc);
  if (root.node == nullptr) {
    return std::string("no XML element");
  }
  if (root.name != "AssumeRoleResponse" && root.name != "AssumeRoleWithWebIdentityResponse") {
    return "root element <" + root.name + ">, expected <AssumeRoleResponse>";
  }
  const std::string result_name =
      root.name.substr(0, root.name.size() - std::string_view("Response").size()) + "Result";
  const pt::ptree* result = xml_child(*root.node, result_name, "", errors, root.name);
  const pt::ptree* creds = result != nullptr
                               ? xml_child(*result, "Credentials", result_name, errors, root.name)
                               : nullptr;
  if (creds == nullptr) {
    return "no " + result_name + ".Credentials";
  }
  temporary_credentials out;
  out.creds.access_key_id = xml_text(*creds, "AccessKeyId", "Credentials", errors, "").value_or("");
  out.creds.secret_access_key =
      xml_text(*creds, "SecretAccessKey", "Credentials", errors, "").value_or("");
  out.creds.session_token =
      xml_text(*creds, "SessionToken", "Credentials", errors, "").value_or("");
  const std::string expiration =
      xml_text(*creds, "Expiration", "Credentials", errors, "").value_or("");
  if (!errors.empty()) {
    return errors.front();
  }
  if (out.creds.access_key_id.empty() || out.creds.secret_access_key.empty() ||
      out.creds.session_token.empty()) {
    return std::string("Credentials without AccessKeyId, SecretAccessKey or SessionToken");
  }
  out.expires = parse_iso8601(expiration);
  if (!out.expires) {
    return "Credentials.Expiration: not an ISO 8601 time: " + expiration;
  }
  return out;
}

std::variant<temporary_credentials, std::string> parse_json_credentials(std::string_view text) {
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = max_input_depth;
  const json::value v = json::parse(text, ec, json::storage_ptr(), options);
  if (ec || !v.is_object()) {
    return std::string("not a JSON object");
  }
  const auto& o = v.get_object();
  const auto str = [&](const char* name) -> std::string {
    const json::value* f = o.if_contains(name);
    return f != nullptr && f->is_string() ? std::string(f->get_string()) : std::string();
  };
  if (const std::string code = str("Code"); !code.empty() && code != "Success") {
    return "Code " + code + (str("Message").empty() ? "" : ": " + str("Message"));
  }
  temporary_credentials out;
  out.creds.access_key_id = str("AccessKeyId");
  out.creds.secret_access_key = str("SecretAccessKey");
  out.creds.session_token = str("Token");
  if (out.creds.access_key_id.empty() || out.creds.secret_access_key.empty()) {
    return std::string("no AccessKeyId or SecretAccessKey");
  }
  if (const std::string e = str("Expiration"); !e.empty()) {
    out.expires = parse_iso8601(e);
    if (!out.expires) {
      return "Expiration: not an ISO 8601 time: " + e;
    }
  }
  return out;
}

std::chrono::system_clock::time_point refresh_at(std::chrono::system_clock::time_point obtained,
                                                 std::chrono::system_clock::time_point expires) {
  const auto early = expires - std::chrono::minutes(5);
  const auto half = obtained + (expires - obtained) / 2;
  return std::max(early, half);
}

credential_chain::credential_chain(std::shared_ptr<http_client> client, aws_settings settings,
                                   config::env_lookup env, std::chrono::milliseconds timeout)
    : client_(std::move(client)), settings_(std::move(settings)), env_(std::move(env)),
      timeout_(timeout) {}

asio::awaitable<std::variant<credentials, std::string>> credential_chain::get() {
  const auto now = clock::now();
  if (current_ && (!expires_ || now < refresh_at_)) {
    co_return *current_;
  }
  auto result = co_await walk();
  if (result && std::holds_alternative<found>(*result)) {
    auto& f = std::get<found>(*result);
    current_ = f.value.creds;
    expires_ = f.value.expires;
    refresh_at_ = expires_ ? refresh_at(now, *expires_) : clock::time_point{};
    source_ = std::move(f.source);
    co_return *current_;
  }
  const std::string reason =
      result ? std::get<std::string>(*result)
             : std::string("no credentials: none in the environment, the shared files, web "
                           "identity, container or instance metadata");
  if (current_ && expires_ && now < *expires_) {
    co_return *current_;  // the refresh failed; the ones we have still work for a while
  }
  current_.reset();
  co_return reason;
}

asio::awaitable<std::optional<credential_chain::outcome>> credential_chain::walk() {
  // 1. The environment.
  auto env_creds = from_environment(env_);
  if (auto* reason = std::get_if<std::string>(&env_creds)) {
    co_return outcome(*reason);
  }
  if (auto& c = std::get<std::optional<credentials>>(env_creds)) {
    co_return outcome(found{{*c, std::nullopt}, "environment"});
  }
  // 2. The shared files.
  if (auto r = co_await from_profile()) {
    co_return r;
  }
  // 3. Web identity from the environment.
  const std::string token_file = env_or(env_, "AWS_WEB_IDENTITY_TOKEN_FILE");
  const std::string role_arn = env_or(env_, "AWS_ROLE_ARN");
  if (!token_file.empty() && !role_arn.empty()) {
    co_return co_await assume_role_with_web_identity(
        token_file, role_arn, env_or(env_, "AWS_ROLE_SESSION_NAME", session_name()));
  }
  // 4. Container credentials.
  if (auto r = co_await from_container()) {
    co_return r;
  }
  // 5. Instance metadata.
  if (settings_.imds_disabled) {
    co_return std::nullopt;
  }
  co_return co_await from_instance_metadata();
}

asio::awaitable<std::optional<credential_chain::outcome>> credential_chain::from_profile() {
  const shared_files where = shared_file_locations(env_);
  const std::string profile = settings_.profile.empty() ? where.profile : settings_.profile;
  const bool named = !settings_.profile.empty() || !env_or(env_, "AWS_PROFILE").empty();
  std::optional<ini_file> creds_file;
  std::optional<ini_file> config_file;
  std::string problem;
  const auto load = [&problem](const std::string& path, std::optional<ini_file>& out) {
    if (auto text = read_file(path)) {
      auto parsed = parse_ini(*text);
      if (auto* reason = std::get_if<std::string>(&parsed)) {
        problem = path + ": " + *reason;
        return;
      }
      out = std::get<ini_file>(std::move(parsed));
    }
  };
  load(where.credentials_path, creds_file);
  load(where.config_path, config_file);
  if (!problem.empty()) {
    co_return outcome(problem);
  }
  if (!creds_file && !config_file) {
    if (named) {
      co_return outcome("profile " + profile + ": no shared credentials or config file (" +
                        where.credentials_path + ", " + where.config_path + ")");
    }
    co_return std::nullopt;
  }
  const ini_file* c = creds_file ? &*creds_file : nullptr;
  const ini_file* k = config_file ? &*config_file : nullptr;
  auto resolved = resolve_profile(c, k, profile);
  if (auto* reason = std::get_if<std::string>(&resolved)) {
    if (!named && reason->starts_with("no profile")) {
      co_return std::nullopt;  // no default profile: the next step may have credentials
    }
    co_return outcome(*reason);
  }
  auto& pc = std::get<profile_credentials>(resolved);
  if (auto* creds = std::get_if<credentials>(&pc)) {
    co_return outcome(found{{*creds, std::nullopt}, "profile " + profile});
  }
  auto r = co_await resolve_role(std::get<role_profile>(pc), c, k, 0);
  if (auto* f = std::get_if<found>(&r)) {
    f->source = "profile " + profile + " (" + f->source + ")";
  }
  co_return r;
}

asio::awaitable<credential_chain::outcome> credential_chain::resolve_role(const role_profile& role,
                                                                          const ini_file* creds,
                                                                          const ini_file* config,
                                                                          int depth) {
  const std::string session =
      role.role_session_name.empty() ? session_name() : role.role_session_name;
  if (!role.web_identity_token_file.empty()) {
    co_return co_await assume_role_with_web_identity(role.web_identity_token_file, role.role_arn,
                                                     session);
  }
  credentials source;
  if (!role.source_profile.empty()) {
    if (depth > 4) {
      co_return outcome("source_profile chain longer than 5 (a loop?)");
    }
    auto resolved = resolve_profile(creds, config, role.source_profile);
    if (auto* reason = std::get_if<std::string>(&resolved)) {
      co_return outcome("source_profile " + role.source_profile + ": " + *reason);
    }
    auto& pc = std::get<profile_credentials>(resolved);
    if (auto* c = std::get_if<credentials>(&pc)) {
      source = *c;
    } else {
      auto inner = co_await resolve_role(std::get<role_profile>(pc), creds, config, depth + 1);
      if (std::holds_alternative<std::string>(inner)) {
        co_return inner;
      }
      source = std::get<found>(inner).value.creds;
    }
  } else if (role.credential_source == "Environment") {
    auto env_creds = from_environment(env_);
    auto* c = std::get_if<std::optional<credentials>>(&env_creds);
    if (c == nullptr || !*c) {
      co_return outcome("credential_source Environment: no credentials in the environment");
    }
    source = **c;
  } else {
    // Two statements, not `a ? co_await x : co_await y` (see http_client.cpp).
    outcome inner = std::string("credential_source EcsContainer: "
                                "AWS_CONTAINER_CREDENTIALS_*_URI is not set");
    if (role.credential_source == "EcsContainer") {
      if (auto r = co_await from_container()) {
        inner = std::move(*r);
      }
    } else {
      inner = co_await from_instance_metadata();
    }
    if (std::holds_alternative<std::string>(inner)) {
      co_return inner;
    }
    source = std::get<found>(inner).value.creds;
  }
  co_return co_await assume_role(source, role.role_arn, session, role.external_id);
}

asio::awaitable<credential_chain::outcome>
credential_chain::assume_role(const credentials& source, const std::string& arn,
                              const std::string& session, const std::string& external_id) {
  std::vector<std::pair<std::string, std::string>> fields;
  fields.emplace_back("Action", "AssumeRole");
  fields.emplace_back("Version", "2011-06-15");
  fields.emplace_back("RoleArn", arn);
  fields.emplace_back("RoleSessionName", session);
  fields.emplace_back("DurationSeconds", "3600");
  if (!external_id.empty()) {
    fields.emplace_back("ExternalId", external_id);
  }
  request r;
  r.method = "POST";
  r.path = settings_.sts.path.empty() ? "/" : settings_.sts.path + "/";
  r.headers = one_header("Host", settings_.sts.host_header());
  r.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded; charset=utf-8");
  r.payload = form(fields);
  const std::string auth = sign(r, source, settings_.sts_region, "sts", clock::now());
  r.headers.emplace_back("Authorization", auth);
  http_request h = make_request("POST", r.path, r.headers, r.payload);
  auto answer = co_await client_->send(settings_.sts, std::move(h), timeout_);
  if (auto* reason = std::get_if<std::string>(&answer)) {
    co_return outcome("STS AssumeRole " + arn + ": " + *reason);
  }
  auto& resp = std::get<http_response>(answer);
  if (resp.status != 200) {
    co_return outcome("STS AssumeRole " + arn + ": " + error_of(resp).text());
  }
  auto parsed = parse_sts_credentials(resp.body);
  if (auto* reason = std::get_if<std::string>(&parsed)) {
    co_return outcome("STS AssumeRole " + arn + ": " + *reason);
  }
  co_return outcome(found{std::get<temporary_credentials>(std::move(parsed)), "AssumeRole " + arn});
}

asio::awaitable<credential_chain::outcome> credential_chain::assume_role_with_web_identity(
    const std::string& token_file, const std::string& arn, const std::string& session) {
  auto token = read_file(token_file);
  if (!token) {
    co_return outcome("web identity token file " + token_file + " cannot be read");
  }
  // Unsigned: the token itself is the proof.
  auto fields = one_header("Action", "AssumeRoleWithWebIdentity");
  fields.emplace_back("Version", "2011-06-15");
  fields.emplace_back("RoleArn", arn);
  fields.emplace_back("RoleSessionName", session);
  fields.emplace_back("WebIdentityToken", std::string(core::trim(*token)));
  const std::string body = form(fields);
  http_request h = make_request(
      "POST", settings_.sts.path.empty() ? "/" : settings_.sts.path + "/",
      one_header("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"), body);
  auto answer = co_await client_->send(settings_.sts, std::move(h), timeout_);
  const std::string what = "STS AssumeRoleWithWebIdentity " + arn;
  if (auto* reason = std::get_if<std::string>(&answer)) {
    co_return outcome(what + ": " + *reason);
  }
  auto& resp = std::get<http_response>(answer);
  if (resp.status != 200) {
    co_return outcome(what + ": " + error_of(resp).text());
  }
  auto parsed = parse_sts_credentials(resp.body);
  if (auto* reason = std::get_if<std::string>(&parsed)) {
    co_return outcome(what + ": " + *reason);
  }
  co_return outcome(
      found{std::get<temporary_credentials>(std::move(parsed)), "web identity, role " + arn});
}

asio::awaitable<std::optional<credential_chain::outcome>> credential_chain::from_container() {
  std::string url = env_or(env_, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
  if (url.empty()) {
    const std::string relative = env_or(env_, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    if (relative.empty()) {
      co_return std::nullopt;
    }
    url = "http://169.254.170.2" + relative;
  }
  auto parsed = parse_endpoint(url);
  if (auto* reason = std::get_if<std::string>(&parsed)) {
    co_return outcome("AWS_CONTAINER_CREDENTIALS_FULL_URI: " + *reason);
  }
  const endpoint& at = std::get<endpoint>(parsed);
  // Plain HTTP only to the hosts the SDKs allow: the loopback and the ECS / EKS agents.
  if (!at.tls &&
      !(at.host == "127.0.0.1" || at.host == "::1" || at.host == "localhost" ||
        at.host == "169.254.170.2" || at.host == "169.254.170.23" || at.host == "fd00:ec2::23")) {
    co_return outcome("container credentials: plain http is allowed only to the loopback and "
                      "the ECS/EKS agents, not " +
                      at.host);
  }
  std::string token = env_or(env_, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
  if (const std::string file = env_or(env_, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
      !file.empty()) {
    auto text = read_file(file);
    if (!text) {
      co_return outcome("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE " + file + " cannot be read");
    }
    token = std::string(core::trim(*text));
  }
  http_request h = make_request("GET", at.path.empty() ? "/" : at.path, {}, {});
  if (!at.query.empty()) {
    h.target += "?" + at.query;
  }
  if (!token.empty()) {
    h.headers.emplace_back("Authorization", token);
  }
  auto answer = co_await client_->send(at, std::move(h), timeout_);
  if (auto* reason = std::get_if<std::string>(&answer)) {
    co_return outcome("container credentials: " + *reason);
  }
  auto& resp = std::get<http_response>(answer);
  if (resp.status != 200) {
    co_return outcome("container credentials: HTTP " + std::to_string(resp.status));
  }
  auto creds = parse_json_credentials(resp.body);
  if (auto* reason = std::get_if<std::string>(&creds)) {
    co_return outcome("container credentials: " + *reason);
  }
  co_return outcome(found{std::get<temporary_credentials>(std::move(creds)), "container"});
}

asio::awaitable<credential_chain::outcome> credential_chain::from_instance_metadata() {
  const endpoint& at = settings_.imds;
  // Instance metadata answers in milliseconds or not at all (not on EC2): a short deadline.
  const auto t = std::min(timeout_, std::chrono::milliseconds(2000));
  auto token_answer = co_await client_->send(
      at,
      make_request("PUT", at.path + "/latest/api/token",
                   one_header("X-aws-ec2-metadata-token-ttl-seconds", "21600"), {}),
      t);
  if (auto* reason = std::get_if<std::string>(&token_answer)) {
    co_return outcome("instance metadata: " + *reason);
  }
  const auto& tr = std::get<http_response>(token_answer);
  if (tr.status != 200) {
    co_return outcome("instance metadata: token: HTTP " + std::to_string(tr.status));
  }
  const std::string token(core::trim(tr.body));
  const std::string base = at.path + "/latest/meta-data/iam/security-credentials/";
  auto role_answer = co_await client_->send(
      at, make_request("GET", base, one_header("X-aws-ec2-metadata-token", token), {}), t);
  if (auto* reason = std::get_if<std::string>(&role_answer)) {
    co_return outcome("instance metadata: " + *reason);
  }
  const auto& rr = std::get<http_response>(role_answer);
  if (rr.status != 200) {
    co_return outcome("instance metadata: no instance role (HTTP " + std::to_string(rr.status) +
                      ")");
  }
  std::string role(core::trim(rr.body.substr(0, rr.body.find('\n'))));
  if (role.empty() || role.find('/') != std::string::npos) {
    co_return outcome("instance metadata: no instance role");
  }
  auto creds_answer = co_await client_->send(
      at, make_request("GET", base + role, one_header("X-aws-ec2-metadata-token", token), {}), t);
  if (auto* reason = std::get_if<std::string>(&creds_answer)) {
    co_return outcome("instance metadata: " + *reason);
  }
  const auto& cr = std::get<http_response>(creds_answer);
  if (cr.status != 200) {
    co_return outcome("instance metadata: credentials: HTTP " + std::to_string(cr.status));
  }
  auto creds = parse_json_credentials(cr.body);
  if (auto* reason = std::get_if<std::string>(&creds)) {
    co_return outcome("instance metadata: " + *reason);
  }
  co_return outcome(found{std::get<temporary_credentials>(std::move(creds)),
                          "instance metadata (role " + role + ")"});
}

}  // namespace wk::aws
