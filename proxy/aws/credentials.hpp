#pragma once
// Where AWS credentials come from, the parts that need no network: the environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and the shared files
// (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE, AWS_PROFILE), read the way the AWS SDKs and CLI
// read them: INI sections, option names case-insensitive, "[profile NAME]" in the config file
// and "[NAME]" in the credentials file, the credentials file winning key by key. A profile
// that names a role (role_arn with source_profile or credential_source, or
// web_identity_token_file) is reported as such: assuming it needs STS, which the caller does.
// Pure: the caller reads the files and passes the environment.

#include "aws/sigv4.hpp"
#include "config/load.hpp"

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace wk::aws {

// An INI file: section -> option (lower-case) -> value (trimmed). Comment lines start with '#'
// or ';'; indented lines under an option ("s3 =\n  key = value") are nested settings, skipped.
using ini_file = std::map<std::string, std::map<std::string, std::string>, std::less<>>;

// The reason ("line 3: expected [section] or name = value") when `text` is not such a file.
std::variant<ini_file, std::string> parse_ini(std::string_view text);

// Credentials from the environment: none when AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are
// both unset; the reason when only one of them is set (or set empty).
std::variant<std::optional<credentials>, std::string>
from_environment(const config::env_lookup& env);

// Where the shared files are and which profile to read: AWS_SHARED_CREDENTIALS_FILE (default
// ~/.aws/credentials), AWS_CONFIG_FILE (default ~/.aws/config), AWS_PROFILE (then
// AWS_DEFAULT_PROFILE, then "default"). "~" is $HOME.
struct shared_files {
  std::string credentials_path;
  std::string config_path;
  std::string profile;
};
shared_files shared_file_locations(const config::env_lookup& env);

// A profile whose credentials come from assuming a role with STS.
struct role_profile {
  std::string role_arn;
  std::string source_profile;           // AssumeRole with that profile's credentials, or
  std::string credential_source;        // "Environment", "Ec2InstanceMetadata", "EcsContainer"
  std::string web_identity_token_file;  // AssumeRoleWithWebIdentity with this token
  std::string role_session_name;        // empty: the caller picks one
  std::string external_id;
  std::string region;  // the profile's region, if any
};

using profile_credentials = std::variant<credentials, role_profile>;

// What `profile` says, from the two files (either may be absent: nullptr). The reason when the
// profile does not exist or gives no usable source.
std::variant<profile_credentials, std::string> resolve_profile(const ini_file* credentials_file,
                                                               const ini_file* config_file,
                                                               std::string_view profile);

}  // namespace wk::aws
