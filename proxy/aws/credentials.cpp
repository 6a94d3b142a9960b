#include "aws/credentials.hpp"

#include "core/ascii.hpp"

#include <cstddef>

namespace wk::aws {

std::variant<ini_file, std::string> parse_ini(std::string_view text) {
  ini_file out;
  std::map<std::string, std::string>* section = nullptr;
  std::size_t number = 0;
  while (!text.empty()) {
    ++number;
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    const bool indented = !line.empty() && (line.front() == ' ' || line.front() == '\t');
    const std::string_view s = core::trim(line);
    if (s.empty() || s.front() == '#' || s.front() == ';') {
      continue;
    }
    if (indented && section != nullptr) {
      continue;  // a nested setting ("s3 =" followed by indented lines)
    }
    if (s.front() == '[') {
      if (s.back() != ']' || s.size() < 3) {
        return "line " + std::to_string(number) + ": a section header must be [name]";
      }
      section = &out[std::string(core::trim(s.substr(1, s.size() - 2)))];
      continue;
    }
    const auto eq = s.find('=');
    if (section == nullptr || eq == std::string_view::npos || eq == 0) {
      return "line " + std::to_string(number) + ": expected [section] or name = value";
    }
    (*section)[core::to_lower(core::trim(s.substr(0, eq)))] =
        std::string(core::trim(s.substr(eq + 1)));
  }
  return out;
}

std::variant<std::optional<credentials>, std::string>
from_environment(const config::env_lookup& env) {
  const auto key = env("AWS_ACCESS_KEY_ID");
  const auto secret = env("AWS_SECRET_ACCESS_KEY");
  const bool has_key = key && !key->empty();
  const bool has_secret = secret && !secret->empty();
  if (!has_key && !has_secret) {
    return std::optional<credentials>();
  }
  if (!has_key || !has_secret) {
    return std::string(has_key ? "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"
                               : "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not");
  }
  credentials c{*key, *secret, env("AWS_SESSION_TOKEN").value_or("")};
  return std::optional<credentials>(std::move(c));
}

shared_files shared_file_locations(const config::env_lookup& env) {
  const std::string home = env("HOME").value_or("");
  const auto path = [&](const char* name, const char* fallback) {
    auto v = env(name);
    std::string p = v && !v->empty() ? *v : std::string(fallback);
    if (p.starts_with("~/")) {
      p = home + p.substr(1);
    }
    return p;
  };
  shared_files out;
  out.credentials_path = path("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials");
  out.config_path = path("AWS_CONFIG_FILE", "~/.aws/config");
  auto profile = env("AWS_PROFILE");
  if (!profile || profile->empty()) {
    profile = env("AWS_DEFAULT_PROFILE");
  }
  out.profile = profile && !profile->empty() ? *profile : "default";
  return out;
}

std::variant<profile_credentials, std::string> resolve_profile(const ini_file* credentials_file,
                                                               const ini_file* config_file,
                                                               std::string_view profile) {
  std::map<std::string, std::string> merged;
  bool found = false;
  if (config_file != nullptr) {
    // "[profile NAME]"; the default profile may also be written "[default]".
    auto it = config_file->find("profile " + std::string(profile));
    if (it == config_file->end() && profile == "default") {
      it = config_file->find("default");
    }
    if (it != config_file->end()) {
      merged = it->second;
      found = true;
    }
  }
  if (credentials_file != nullptr) {
    if (const auto it = credentials_file->find(profile); it != credentials_file->end()) {
      for (const auto& [k, v] : it->second) {
        merged[k] = v;  // the credentials file wins, key by key
      }
      found = true;
    }
  }
  if (!found) {
    return "no profile " + std::string(profile) + " in the shared credentials or config file";
  }
  const auto get = [&](const char* k) {
    const auto it = merged.find(k);
    return it == merged.end() ? std::string() : it->second;
  };
  role_profile role;
  role.role_arn = get("role_arn");
  role.source_profile = get("source_profile");
  role.credential_source = get("credential_source");
  role.web_identity_token_file = get("web_identity_token_file");
  role.role_session_name = get("role_session_name");
  role.external_id = get("external_id");
  role.region = get("region");
  if (!role.role_arn.empty()) {
    const int sources = (role.source_profile.empty() ? 0 : 1) +
                        (role.credential_source.empty() ? 0 : 1) +
                        (role.web_identity_token_file.empty() ? 0 : 1);
    if (sources != 1) {
      return "profile " + std::string(profile) +
             ": role_arn needs exactly one of source_profile, credential_source and "
             "web_identity_token_file";
    }
    if (!role.credential_source.empty() && role.credential_source != "Environment" &&
        role.credential_source != "Ec2InstanceMetadata" &&
        role.credential_source != "EcsContainer") {
      return "profile " + std::string(profile) + ": unknown credential_source " +
             role.credential_source +
             " (expected Environment, Ec2InstanceMetadata or EcsContainer)";
    }
    return profile_credentials(std::move(role));
  }
  const std::string key = get("aws_access_key_id");
  const std::string secret = get("aws_secret_access_key");
  if (!key.empty() && !secret.empty()) {
    return profile_credentials(credentials{key, secret, get("aws_session_token")});
  }
  if (!key.empty() || !secret.empty()) {
    return "profile " + std::string(profile) +
           ": aws_access_key_id and aws_secret_access_key must be given together";
  }
  return "profile " + std::string(profile) + " has no credentials (no keys and no role_arn)";
}

}  // namespace wk::aws
