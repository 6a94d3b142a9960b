#pragma once
// Where wkproxy's AWS credentials come from, in the AWS SDKs' standard order, network included:
//  1. the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN);
//  2. the shared files with AWS_PROFILE (or aws.profile), a profile naming a role_arn assumed
//     through STS AssumeRole with its source_profile's or credential_source's credentials, or
//     with its web_identity_token_file (AssumeRoleWithWebIdentity);
//  3. web identity from the environment (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN: EKS IRSA);
//  4. container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI, with
//     AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]: ECS, EKS Pod Identity);
//  5. EC2 instance metadata, IMDSv2 (unless AWS_EC2_METADATA_DISABLED=true).
// Temporary credentials are fetched again before they expire: 5 minutes before, or at half
// their lifetime when that is shorter. The standard endpoint overrides apply: AWS_ENDPOINT_URL,
// AWS_ENDPOINT_URL_CLOUDFRONT, AWS_ENDPOINT_URL_STS, AWS_EC2_METADATA_SERVICE_ENDPOINT, and
// AWS_CA_BUNDLE for the trust anchors.

#include "aws/cloudfront.hpp"
#include "aws/credentials.hpp"
#include "aws/http_client.hpp"
#include "config/load.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <variant>

namespace wk::aws {

// The endpoints and trust of the AWS APIs, from the environment.
struct aws_settings {
  endpoint cloudfront;  // AWS_ENDPOINT_URL_CLOUDFRONT, AWS_ENDPOINT_URL, or the global endpoint
  endpoint sts;         // AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, regional or global STS
  std::string sts_region = "us-east-1";
  endpoint imds;  // AWS_EC2_METADATA_SERVICE_ENDPOINT or http://169.254.169.254
  bool imds_disabled = false;
  std::string ca_bundle;  // AWS_CA_BUNDLE
  std::string profile;    // aws.profile, else AWS_PROFILE / AWS_DEFAULT_PROFILE (see shared_files)
};

// The settings for `env`; `profile` (aws.profile) wins over AWS_PROFILE when not empty. The
// reason when an override is not a URL.
std::variant<aws_settings, std::string> settings_from_env(const config::env_lookup& env,
                                                          std::string_view profile);

// "2026-12-06T03:04:05Z", with optional fractional seconds and a "+00:00" zone.
std::optional<std::chrono::system_clock::time_point> parse_iso8601(std::string_view text);

// STS's answer to AssumeRole / AssumeRoleWithWebIdentity: the credentials and their expiry.
struct temporary_credentials {
  credentials creds;
  std::optional<std::chrono::system_clock::time_point> expires;
};
std::variant<temporary_credentials, std::string> parse_sts_credentials(std::string_view xml);
// The JSON of instance metadata and of container credentials endpoints.
std::variant<temporary_credentials, std::string> parse_json_credentials(std::string_view text);

// When to fetch temporary credentials again: 5 minutes before `expires`, or half-way through
// their life (from `obtained`) when that comes later.
std::chrono::system_clock::time_point refresh_at(std::chrono::system_clock::time_point obtained,
                                                 std::chrono::system_clock::time_point expires);

class credential_chain {
public:
  using clock = std::chrono::system_clock;

  credential_chain(std::shared_ptr<http_client> client, aws_settings settings,
                   config::env_lookup env, std::chrono::milliseconds timeout);

  // Credentials that are valid now: the cached ones, or a fresh walk of the chain when there
  // are none yet or they are due for refresh. When a refresh fails while the cached ones are
  // still valid, those are used. The reason when nothing gives credentials.
  boost::asio::awaitable<std::variant<credentials, std::string>> get();

  // Which step gave the current credentials ("environment", "profile ci (AssumeRole ...)",
  // "instance metadata (role web)"); "" before the first success.
  [[nodiscard]] const std::string& source() const { return source_; }
  [[nodiscard]] std::optional<clock::time_point> expires() const { return expires_; }
  [[nodiscard]] const aws_settings& settings() const { return settings_; }

private:
  struct found {
    temporary_credentials value;
    std::string source;
  };
  using outcome = std::variant<found, std::string>;  // std::string: the reason
  // std::nullopt: this step does not apply (try the next).
  boost::asio::awaitable<std::optional<outcome>> walk();
  boost::asio::awaitable<std::optional<outcome>> from_profile();
  boost::asio::awaitable<outcome> resolve_role(const role_profile& role, const ini_file* creds,
                                               const ini_file* config, int depth);
  boost::asio::awaitable<outcome> assume_role(const credentials& source, const std::string& arn,
                                              const std::string& session,
                                              const std::string& external_id);
  boost::asio::awaitable<outcome> assume_role_with_web_identity(const std::string& token_file,
                                                                const std::string& arn,
                                                                const std::string& session);
  boost::asio::awaitable<std::optional<outcome>> from_container();
  boost::asio::awaitable<outcome> from_instance_metadata();

  std::shared_ptr<http_client> client_;
  aws_settings settings_;
  config::env_lookup env_;
  std::chrono::milliseconds timeout_;
  std::optional<credentials> current_;
  std::optional<clock::time_point> expires_;
  clock::time_point refresh_at_{};
  std::string source_;
};

}  // namespace wk::aws
