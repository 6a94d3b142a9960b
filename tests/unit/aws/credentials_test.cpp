// The network-free parts of the credential chain: the environment, the shared files and the
// profile they describe, as the AWS SDKs and CLI read them.

#include "aws/credentials.hpp"

#include <doctest/doctest.h>

#include <map>
#include <string>

namespace a = wk::aws;

namespace {

wk::config::env_lookup env_of(std::map<std::string, std::string, std::less<>> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
}

a::ini_file ini(std::string_view text) {
  auto r = a::parse_ini(text);
  REQUIRE_MESSAGE(std::holds_alternative<a::ini_file>(r), std::get<std::string>(r));
  return std::get<a::ini_file>(r);
}

}  // namespace

TEST_CASE("environment: both keys, or none, or a clear reason") {
  auto none = a::from_environment(env_of({}));
  REQUIRE(std::holds_alternative<std::optional<a::credentials>>(none));
  CHECK_FALSE(std::get<std::optional<a::credentials>>(none));

  auto both = a::from_environment(env_of(
      {{"AWS_ACCESS_KEY_ID", "AKID"}, {"AWS_SECRET_ACCESS_KEY", "s"}, {"AWS_SESSION_TOKEN", "t"}}));
  REQUIRE(std::holds_alternative<std::optional<a::credentials>>(both));
  const auto& c = *std::get<std::optional<a::credentials>>(both);
  CHECK(c.access_key_id == "AKID");
  CHECK(c.secret_access_key == "s");
  CHECK(c.session_token == "t");

  auto half = a::from_environment(env_of({{"AWS_ACCESS_KEY_ID", "AKID"}}));
  REQUIRE(std::holds_alternative<std::string>(half));
  CHECK(std::get<std::string>(half) == "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
}

TEST_CASE("shared file locations and the profile follow the SDKs' variables") {
  auto d = a::shared_file_locations(env_of({{"HOME", "/home/ops"}}));
  CHECK(d.credentials_path == "/home/ops/.aws/credentials");
  CHECK(d.config_path == "/home/ops/.aws/config");
  CHECK(d.profile == "default");
  auto s = a::shared_file_locations(env_of({{"HOME", "/h"},
                                            {"AWS_SHARED_CREDENTIALS_FILE", "/etc/aws/creds"},
                                            {"AWS_CONFIG_FILE", "~/cfg"},
                                            {"AWS_DEFAULT_PROFILE", "old"},
                                            {"AWS_PROFILE", "saas"}}));
  CHECK(s.credentials_path == "/etc/aws/creds");
  CHECK(s.config_path == "/h/cfg");
  CHECK(s.profile == "saas");
  CHECK(a::shared_file_locations(env_of({{"AWS_DEFAULT_PROFILE", "old"}})).profile == "old");
}

TEST_CASE("INI: sections, case-insensitive names, comments, nested settings") {
  const auto f = ini("# comment\n"
                     "[default]\n"
                     "AWS_Access_Key_ID = AKID  \n"
                     "; another comment\n"
                     "s3 =\n"
                     "  max_concurrent_requests = 20\n"
                     "[profile saas]\n"
                     "region=us-east-1\n");
  CHECK(f.at("default").at("aws_access_key_id") == "AKID");
  CHECK(f.at("default").at("s3").empty());
  CHECK_FALSE(f.at("default").contains("max_concurrent_requests"));
  CHECK(f.at("profile saas").at("region") == "us-east-1");
  CHECK(std::get<std::string>(a::parse_ini("key = value\n")) ==
        "line 1: expected [section] or name = value");
  CHECK(std::get<std::string>(a::parse_ini("[default\n")) ==
        "line 1: a section header must be [name]");
}

TEST_CASE("a profile: static keys, the credentials file winning key by key") {
  const auto creds = ini("[saas]\naws_access_key_id = FROMCREDS\naws_secret_access_key = s1\n");
  const auto cfg = ini("[profile saas]\naws_access_key_id = FROMCONFIG\n"
                       "aws_secret_access_key = s2\naws_session_token = tok\n"
                       "[default]\naws_access_key_id = D\naws_secret_access_key = ds\n");
  auto r = a::resolve_profile(&creds, &cfg, "saas");
  REQUIRE(std::holds_alternative<a::profile_credentials>(r));
  const auto& c = std::get<a::credentials>(std::get<a::profile_credentials>(r));
  CHECK(c.access_key_id == "FROMCREDS");
  CHECK(c.secret_access_key == "s1");
  CHECK(c.session_token == "tok");
  // "[default]" in the config file is the default profile; "[saas]" there is not "saas".
  auto d = a::resolve_profile(nullptr, &cfg, "default");
  CHECK(std::get<a::credentials>(std::get<a::profile_credentials>(d)).access_key_id == "D");
  CHECK(std::get<std::string>(a::resolve_profile(nullptr, &creds, "saas")) ==
        "no profile saas in the shared credentials or config file");
}

TEST_CASE("a profile naming a role reports the role and its one source") {
  const auto cfg = ini("[profile deploy]\n"
                       "role_arn = arn:aws:iam::123456789012:role/wkproxy\n"
                       "source_profile = base\n"
                       "role_session_name = wk\n"
                       "external_id = x-1\n"
                       "region = us-east-1\n"
                       "[profile irsa]\n"
                       "role_arn = arn:aws:iam::123456789012:role/irsa\n"
                       "web_identity_token_file = /var/run/secrets/token\n"
                       "[profile both]\n"
                       "role_arn = arn:aws:iam::1:role/r\n"
                       "source_profile = base\n"
                       "credential_source = Environment\n"
                       "[profile odd]\n"
                       "role_arn = arn:aws:iam::1:role/r\n"
                       "credential_source = Laptop\n"
                       "[profile empty]\n"
                       "region = eu-west-1\n");
  auto r = a::resolve_profile(nullptr, &cfg, "deploy");
  const auto& role = std::get<a::role_profile>(std::get<a::profile_credentials>(r));
  CHECK(role.role_arn == "arn:aws:iam::123456789012:role/wkproxy");
  CHECK(role.source_profile == "base");
  CHECK(role.role_session_name == "wk");
  CHECK(role.external_id == "x-1");
  auto w = a::resolve_profile(nullptr, &cfg, "irsa");
  CHECK(std::get<a::role_profile>(std::get<a::profile_credentials>(w)).web_identity_token_file ==
        "/var/run/secrets/token");
  CHECK(std::get<std::string>(a::resolve_profile(nullptr, &cfg, "both"))
            .find("exactly one of source_profile") != std::string::npos);
  CHECK(std::get<std::string>(a::resolve_profile(nullptr, &cfg, "odd"))
            .find("unknown credential_source Laptop") != std::string::npos);
  CHECK(std::get<std::string>(a::resolve_profile(nullptr, &cfg, "empty")) ==
        "profile empty has no credentials (no keys and no role_arn)");
}
