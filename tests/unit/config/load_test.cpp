#include "config/load.hpp"
#include "config/upstream_url.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <stdlib.h>

namespace cfg = wk::config;
namespace chrono = std::chrono;

// Lets doctest print the messages of a failed comparison.
template <> struct doctest::StringMaker<std::vector<std::string>> {
  static doctest::String convert(const std::vector<std::string>& lines) {
    std::string out = "{";
    for (const std::string& line : lines) {
      out += "\n  \"" + line + "\"";
    }
    out += lines.empty() ? "}" : "\n}";
    return out.c_str();
  }
};

namespace {

const std::string fixtures = std::string(WK_FIXTURES_DIR) + "/config/";

cfg::env_lookup fake_env(std::map<std::string, std::string, std::less<>> vars = {}) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) {
      return std::nullopt;
    }
    return it->second;
  };
}

std::vector<std::string> messages(const cfg::load_result& result) {
  std::vector<std::string> out;
  for (const cfg::error& e : result.errors) {
    out.push_back(e.to_string());
  }
  return out;
}

// The minimal config of DESIGN.md section 4, without its comments.
const std::string minimal = "version: 1\n"
                            "listen: [\"127.0.0.1:8080\"]\n"
                            "origin: http://127.0.0.1:8081\n"
                            "cloudfront: http://d111111abcdef8.cloudfront.net\n"
                            "domains: [example.com, www.example.com]\n";

// The minimal config with `extra` appended (lines 6 and on).
cfg::load_result load_with(const std::string& extra,
                           std::map<std::string, std::string, std::less<>> vars = {}) {
  return cfg::load_string(minimal + extra, "test.yaml", fake_env(std::move(vars)));
}

}  // namespace

TEST_CASE("the minimal config loads with every other key defaulted") {
  const auto result = cfg::load_file(fixtures + "good/minimal.yaml", fake_env());
  REQUIRE(result.errors.empty());
  REQUIRE(result.cfg.has_value());
  const cfg::config& c = *result.cfg;
  CHECK(c.file == fixtures + "good/minimal.yaml");
  CHECK(c.version == 1);
  REQUIRE(c.listen.size() == 1);
  CHECK(c.listen[0].address == "127.0.0.1:8080");
  CHECK(c.listen[0].host == "127.0.0.1");
  CHECK(c.listen[0].port == 8080);
  CHECK(c.origin.name == "origin");
  CHECK(c.origin.url == "http://127.0.0.1:8081");
  CHECK_FALSE(c.origin.tls);
  CHECK(c.origin.host == "127.0.0.1");
  CHECK(c.origin.port == 8081);
  CHECK(c.cloudfront.name == "cloudfront");
  CHECK(c.cloudfront.host == "d111111abcdef8.cloudfront.net");
  CHECK(c.cloudfront.port == 80);
  CHECK(c.cloudfront.sni.empty());
  CHECK(c.validation.domains == std::vector<std::string>{"example.com", "www.example.com"});

  const cfg::config defaults;
  CHECK(c.validation.prefix == defaults.validation.prefix);
  CHECK(c.validation.methods == defaults.validation.methods);
  CHECK(c.timeouts.connect == defaults.timeouts.connect);
  CHECK(c.timeouts.body_idle == defaults.timeouts.body_idle);
  CHECK(c.limits.header_bytes == defaults.limits.header_bytes);
  CHECK(c.limits.max_body_bytes == 0);
  CHECK(c.headers.x_forwarded_for == cfg::forwarded_policy::append);
  CHECK(c.dns.refresh == defaults.dns.refresh);
  CHECK(c.access_log.output == cfg::log_output::stdout_stream);
  CHECK(c.access_log.format == cfg::log_format::json);
  CHECK(c.access_log.path.empty());
  CHECK(c.log_level == cfg::log_level::info);
  CHECK(c.workers == 0);
  CHECK(c.io == cfg::io_engine::automatic);
}

TEST_CASE("a full config sets every key, with substitution in list items and URLs") {
  const auto result = cfg::load_file(
      fixtures + "good/full.yaml",
      fake_env({{"WK_LISTEN", "127.0.0.1:9090"}, {"WK_ORIGIN_HOST", "origin.example.net"}}));
  REQUIRE(messages(result) == std::vector<std::string>{});
  const cfg::config& c = *result.cfg;

  REQUIRE(c.listen.size() == 3);
  CHECK(c.listen[0].address == "127.0.0.1:9090");
  CHECK(c.listen[0].port == 9090);
  CHECK(c.listen[1].address == "[::1]:0");
  CHECK(c.listen[1].host == "::1");
  CHECK(c.listen[2].host == "0.0.0.0");
  CHECK(c.listen[2].port == 8443);

  CHECK(c.origin.url == "https://origin.example.net:8443/");
  CHECK(c.origin.tls);
  CHECK(c.origin.host == "origin.example.net");
  CHECK(c.origin.port == 8443);
  CHECK(c.origin.sni == "origin.example.net");
  CHECK_FALSE(c.origin.verify);
  CHECK(c.origin.ca_file == fixtures + "good/../ca.pem");  // relative to the config file
  CHECK(c.cloudfront.tls);
  CHECK(c.cloudfront.host == "d111111abcdef8.cloudfront.net");
  CHECK(c.cloudfront.sni == "d111111abcdef8.cloudfront.net");
  CHECK(c.cloudfront.verify);

  CHECK(c.validation.prefix == "/.well-known/acme-files/");
  CHECK(c.validation.domains ==
        std::vector<std::string>{"example.com", "*.example.org", "extra.example.net"});
  CHECK(c.validation.methods == std::vector<std::string>{"GET"});

  CHECK(c.timeouts.connect == chrono::milliseconds(250));
  CHECK(c.timeouts.header_read == chrono::milliseconds(1500));
  CHECK(c.timeouts.idle == chrono::minutes(2));
  CHECK(c.timeouts.upstream_response == chrono::hours(1));
  CHECK(c.timeouts.upstream_idle == chrono::seconds(3));
  CHECK(c.timeouts.body_idle == chrono::seconds(15));

  CHECK(c.limits.header_bytes == 64 * 1024);
  CHECK(c.limits.header_count == 50);
  CHECK(c.limits.target_bytes == 4 * 1024);
  CHECK(c.limits.max_connections == 20);
  CHECK(c.limits.max_body_bytes == 1ULL << 30);

  CHECK(c.headers.x_forwarded_for == cfg::forwarded_policy::replace);
  CHECK(c.headers.x_forwarded_proto == cfg::forwarded_policy::off);
  CHECK(c.dns.refresh == chrono::seconds(10));
  CHECK(c.access_log.output == cfg::log_output::stderr_stream);
  CHECK(c.workers == 4);
}

TEST_CASE("bad config files report every error with file, line, column, key and reason") {
  struct row {
    std::string_view fixture;
    std::vector<std::string> errors;  // after "FILE:"
  };
  const std::string domain_shape = " (expected a host name, \"*.\" + a host name, or \"*\")";
  const std::vector<row> rows{
      {"unknown_key.yaml",
       {"7:3: timeouts.conect: unknown key (expected one of: connect, header_read, idle, "
        "upstream_response, upstream_idle, body_idle, tunnel_idle)",
        "8:1: colour: unknown key (expected one of: version, listen, origin, cloudfront, domains, "
        "validation, tokens, tokens_dir, timeouts, limits, headers, dns, shutdown, access_log, "
        "log_level, "
        "workers, io, pid_file, admin, aws)"}},
      {"wrong_type.yaml",
       {"2:9: listen: expected a list, got a single value",
        "3:9: origin: expected a URL or a mapping with url, got a list",
        "5:10: domains: expected a list, got a single value",
        "6:11: timeouts: expected a mapping, got a single value"}},
      {"bad_scheme.yaml",
       {"3:9: origin: scheme must be http or https",
        "5:8: cloudfront.url: invalid URL \"d111111abcdef8.cloudfront.net\" (expected "
        "http://HOST[:PORT] or https://HOST[:PORT])"}},
      {"missing_keys.yaml",
       {"2:1: origin: missing required key", "2:1: cloudfront: missing required key",
        "2:1: domains: missing required key"}},
      {"bad_duration.yaml",
       {"7:12: timeouts.connect: invalid duration \"5 seconds\" (expected e.g. 250ms, 5s, 2m, 1h)",
        "8:9: timeouts.idle: invalid duration \"-1s\" (expected e.g. 250ms, 5s, 2m, 1h)",
        "9:16: timeouts.header_read: must be greater than 0",
        "11:12: dns.refresh: invalid duration \"1d\" (expected e.g. 250ms, 5s, 2m, 1h)"}},
      {"unset_env.yaml",
       {"2:10: listen[0]: environment variable WK_UNSET_PORT is not set",
        "3:9: origin: unterminated \"${\" (missing \"}\")",
        "5:24: domains[1]: invalid environment variable name \"1BAD\""}},
      {"bad_domain.yaml",
       {"6:5: domains[0]: invalid domain \"exa mple.com\"" + domain_shape,
        "7:5: domains[1]: invalid domain \"*foo.com\"" + domain_shape,
        "8:5: domains[2]: invalid domain \"a.*.com\"" + domain_shape,
        "9:5: domains[3]: invalid domain \"http://x\"" + domain_shape,
        "10:5: domains[4]: invalid domain \"\"" + domain_shape,
        "13:5: domains[7]: duplicate domain \"example.com\""}},
      {"tls_only_keys.yaml",
       {"5:8: origin.sni: only applies to an https:// upstream",
        "6:11: origin.verify: only applies to an https:// upstream"}},
      {"syntax.yaml", {"3:1: YAML syntax error: end of sequence flow not found"}},
      {"many_errors.yaml",
       {"1:10: version: must be 1, got \"2\"",
        "2:28: listen[1]: duplicate listen address \"127.0.0.1:8080\" (same as listen[0])",
        "2:46: listen[2]: invalid listen address \"localhost:80\": host must be an IP address, "
        "got \"localhost\"",
        "3:9: origin: a path is not allowed (only \"/\")",
        "6:11: cloudfront.verify: expected true or false, got \"maybe\"",
        "7:12: cloudfront.ca_file: cannot read CA file \"" + fixtures +
            "bad/missing-ca.pem\": No such file or directory",
        "10:12: validation.domains: the allow-list is given twice (domains and "
        "validation.domains); keep one",
        "11:18: validation.methods[1]: only GET and HEAD are supported, got \"POST\"",
        "12:11: validation.prefix: must not contain \"//\", got \"/.well-known//x/\"",
        "14:17: limits.header_bytes: must be at least 1024 bytes",
        "15:17: limits.header_count: expected a positive integer, got \"-1\"",
        "16:10: workers: expected auto or a number from 1 to 256, got \"0\"",
        "17:13: access_log: expected stdout, stderr, off or a file path (with a \"/\", e.g. "
        "./access.log), got \"syslog\""}},
  };
  for (const row& r : rows) {
    CAPTURE(r.fixture);
    const std::string path = fixtures + "bad/" + std::string(r.fixture);
    const auto result = cfg::load_file(path, fake_env());
    CHECK_FALSE(result.cfg.has_value());
    std::vector<std::string> expected;
    for (const std::string& e : r.errors) {
      expected.push_back(path + ":" + e);
    }
    CHECK(messages(result) == expected);
  }
}

TEST_CASE("each value is checked against its own rule") {
  struct row {
    std::string_view name;
    std::string extra;                // appended to the minimal config, from line 6
    std::vector<std::string> errors;  // full messages; empty: the config loads
  };
  const std::vector<row> rows{
      {"timeouts accept every unit", "timeouts: {connect: 250ms, idle: 1.5, body_idle: 1h}\n", {}},
      {"a zero timeout is refused",
       "timeouts:\n  connect: 0ms\n",
       {"test.yaml:7:12: timeouts.connect: must be greater than 0"}},
      {"a timeout below a millisecond is refused",
       "timeouts:\n  connect: 0.5ms\n",
       {"test.yaml:7:12: timeouts.connect: must be greater than 0"}},
      {"limits accept sizes and counts",
       "limits: {header_bytes: 1KiB, target_bytes: 1024, header_count: 1, max_body_bytes: 0}\n",
       {}},
      {"target_bytes may not exceed header_bytes",
       "limits:\n  header_bytes: 16k\n  target_bytes: 17k\n",
       {"test.yaml:8:17: limits.target_bytes: must not exceed limits.header_bytes (16384)"}},
      {"a bad size is refused",
       "limits:\n  max_body_bytes: 1.5G\n",
       {"test.yaml:7:19: limits.max_body_bytes: invalid size \"1.5G\" (expected e.g. 512, 16KiB, "
        "8MiB, 1GiB)"}},
      {"a count is a positive integer",
       "limits:\n  max_connections: 0\n",
       {"test.yaml:7:20: limits.max_connections: expected a positive integer, got \"0\""}},
      {"shutdown settings (accept_grace may be 0)",
       "shutdown: {accept_grace: 0s, drain_timeout: 5s, upgrade_timeout: 10s}\n",
       {}},
      {"a drain_timeout of 0 is refused",
       "shutdown:\n  drain_timeout: 0s\n",
       {"test.yaml:7:18: shutdown.drain_timeout: must be greater than 0"}},
      {"per-connection request limits",
       "limits: {max_requests_per_connection: 5, max_pipelined: 2}\n",
       {}},
      {"max_pipelined 0 means no cap", "limits: {max_pipelined: 0}\n", {}},
      {"max_pipelined is a count",
       "limits: {max_pipelined: -1}\n",
       {"test.yaml:6:25: limits.max_pipelined: expected 0 (no cap) or a positive integer, got "
        "\"-1\""}},
      {"header policies", "headers: {x_forwarded_for: \"off\", x_forwarded_proto: replace}\n", {}},
      {"an unknown header policy is refused",
       "headers:\n  x_forwarded_for: drop\n",
       {"test.yaml:7:20: headers.x_forwarded_for: expected off, append or replace, got \"drop\""}},
      {"workers may be auto or a count", "workers: 256\n", {}},
      {"io may be auto, io_uring or epoll", "io: io_uring\n", {}},
      {"io names one of three engines",
       "io: uring\n",
       {"test.yaml:6:5: io: expected auto, io_uring or epoll, got \"uring\""}},
      {"workers above 256 are refused",
       "workers: 257\n",
       {"test.yaml:6:10: workers: expected auto or a number from 1 to 256, got \"257\""}},
      {"pid_file is a path (its directory need not exist yet)",
       "pid_file: /nonexistent-run-dir/wkproxy.pid\n",
       {}},
      {"an empty pid_file is refused",
       "pid_file: \"\"\n",
       {"test.yaml:6:11: pid_file: expected a file path, got an empty string"}},
      {"a pid_file naming a directory is refused",
       "pid_file: /run/\n",
       {"test.yaml:6:11: pid_file: a file path must not end in \"/\", got \"/run/\""}},
      {"access_log may be off", "access_log: \"off\"\n", {}},
      {"methods are upper-cased", "validation: {methods: [get, Head]}\n", {}},
      {"an empty method list is refused",
       "validation:\n  methods: []\n",
       {"test.yaml:7:12: validation.methods: must not be empty"}},
      {"a method that is not a token is refused",
       "validation:\n  methods: [\"G T\"]\n",
       {"test.yaml:7:13: validation.methods[0]: invalid method \"G T\""}},
      {"a prefix must start and end with a slash",
       "validation:\n  prefix: /.well-known\n",
       {"test.yaml:7:11: validation.prefix: must start and end with \"/\", got \"/.well-known\""}},
      {"a prefix may not hold percent signs",
       "validation:\n  prefix: /%2e/\n",
       {"test.yaml:7:11: validation.prefix: must not contain \"%\", \"?\", \"#\", \"\\\", spaces "
        "or control characters, got \"/%2e/\""}},
      {"a prefix may not hold dot segments",
       "validation:\n  prefix: /./x/\n",
       {"test.yaml:7:11: validation.prefix: must not contain \".\" or \"..\" segments, got "
        "\"/./x/\""}},
      {"the root prefix is allowed", "validation: {prefix: /}\n", {}},
      {"an empty value is reported at its key",
       "dns:\n  refresh:\nworkers: 2\n",
       {"test.yaml:7:3: dns.refresh: missing value"}},
      {"an empty section is the same as no section", "timeouts:\nlimits: {}\n", {}},
      {"a key given twice is refused",
       "workers: 2\nworkers: 3\n",
       {"test.yaml:7:1: workers: duplicate key"}},
      {"a key that is not a name is refused",
       "timeouts:\n  [a]: 5s\n",
       {"test.yaml:7:3: timeouts: keys must be plain names"}},
  };
  for (const row& r : rows) {
    CAPTURE(r.name);
    const auto result = load_with(r.extra);
    CHECK(messages(result) == r.errors);
    CHECK(result.cfg.has_value() == r.errors.empty());
  }
}

TEST_CASE("access_log: a keyword, a file path, or a mapping with output and format") {
  // Loaded as if from the fixtures directory, which exists: relative paths start there.
  const std::string file = fixtures + "good/test.yaml";
  const auto load = [&](const std::string& extra) {
    return cfg::load_string(minimal + extra, file, fake_env({{"LOGS", fixtures + "good"}}));
  };
  struct row {
    std::string_view name;
    std::string extra;
    cfg::log_output output;
    std::string path;
    cfg::log_format format;
  };
  const std::vector<row> rows{
      {"stdout", "access_log: stdout\n", cfg::log_output::stdout_stream, "", cfg::log_format::json},
      {"stderr", "access_log: stderr\n", cfg::log_output::stderr_stream, "", cfg::log_format::json},
      {"off", "access_log: \"off\"\n", cfg::log_output::off, "", cfg::log_format::json},
      {"a relative path starts at the config file's directory", "access_log: ./access.log\n",
       cfg::log_output::file, fixtures + "good/access.log", cfg::log_format::json},
      {"a path into a subdirectory", "access_log: ../good/x.log\n", cfg::log_output::file,
       fixtures + "good/x.log", cfg::log_format::json},
      {"an absolute path, with substitution", "access_log: ${LOGS}/access.log\n",
       cfg::log_output::file, fixtures + "good/access.log", cfg::log_format::json},
      {"a mapping with both keys", "access_log: {output: stderr, format: combined}\n",
       cfg::log_output::stderr_stream, "", cfg::log_format::combined},
      {"a mapping with a path", "access_log:\n  output: ./a.log\n  format: json\n",
       cfg::log_output::file, fixtures + "good/a.log", cfg::log_format::json},
      {"a mapping with only format writes to stdout", "access_log: {format: combined}\n",
       cfg::log_output::stdout_stream, "", cfg::log_format::combined},
      {"an empty mapping is the default", "access_log: {}\n", cfg::log_output::stdout_stream, "",
       cfg::log_format::json},
  };
  for (const row& r : rows) {
    CAPTURE(r.name);
    const auto result = load(r.extra);
    REQUIRE(messages(result) == std::vector<std::string>{});
    CHECK(result.cfg->access_log.output == r.output);
    CHECK(result.cfg->access_log.path == r.path);
    CHECK(result.cfg->access_log.format == r.format);
  }

  struct bad {
    std::string_view name;
    std::string extra;
    std::string error;  // after "FILE:"
  };
  const std::vector<bad> bads{
      {"a word that is not a keyword", "access_log: stdot\n",
       "6:13: access_log: expected stdout, stderr, off or a file path (with a \"/\", e.g. "
       "./access.log), got \"stdot\""},
      {"an empty value", "access_log: \"\"\n",
       "6:13: access_log: expected stdout, stderr, off or a file path (with a \"/\", e.g. "
       "./access.log), got \"\""},
      {"a missing value", "access_log:\n", "6:1: access_log: missing value"},
      {"a directory", "access_log: ./\n",
       "6:13: access_log: a file path must not end in \"/\", got \"./\""},
      {"an existing directory without a slash", "access_log: ../good\n",
       "6:13: access_log: is a directory: \"" + fixtures + "good\""},
      {"a directory that does not exist", "access_log: ./no-such-dir/access.log\n",
       "6:13: access_log: no such directory: \"" + fixtures + "good/no-such-dir\""},
      {"a list", "access_log: [stdout]\n",
       "6:13: access_log: expected stdout, stderr, off, a file path or a mapping with output and "
       "format, got a list"},
      {"an unknown format", "access_log:\n  format: apache\n",
       "7:11: access_log.format: expected json or combined, got \"apache\""},
      {"a bad output in the mapping", "access_log: {output: syslog}\n",
       "6:22: access_log.output: expected stdout, stderr, off or a file path (with a \"/\", e.g. "
       "./access.log), got \"syslog\""},
      {"an unknown key in the mapping", "access_log:\n  fromat: json\n",
       "7:3: access_log.fromat: unknown key (expected one of: output, format)"},
      {"a key given twice", "access_log:\n  format: json\n  format: combined\n",
       "8:3: access_log.format: duplicate key"},
  };
  for (const bad& b : bads) {
    CAPTURE(b.name);
    const auto result = load(b.extra);
    CHECK_FALSE(result.cfg.has_value());
    CHECK(messages(result) == std::vector<std::string>{file + ":" + b.error});
  }
}

TEST_CASE("log_level") {
  struct row {
    std::string_view text;
    cfg::log_level level;
  };
  for (const row& r : std::vector<row>{{"debug", cfg::log_level::debug},
                                       {"info", cfg::log_level::info},
                                       {"warn", cfg::log_level::warn},
                                       {"error", cfg::log_level::error}}) {
    CAPTURE(r.text);
    const auto result = load_with("log_level: " + std::string(r.text) + "\n");
    REQUIRE(messages(result) == std::vector<std::string>{});
    CHECK(result.cfg->log_level == r.level);
  }
  CHECK(messages(load_with("log_level: verbose\n")) ==
        std::vector<std::string>{
            "test.yaml:6:12: log_level: expected debug, info, warn or error, got \"verbose\""});
  CHECK(messages(load_with("log_level: [info]\n")) ==
        std::vector<std::string>{"test.yaml:6:12: log_level: expected a single value, got a list"});
}

TEST_CASE("listen entries") {
  const auto load_listen = [](const std::string& listen) {
    return cfg::load_string("version: 1\n"
                            "listen: " +
                                listen +
                                "\n"
                                "origin: http://127.0.0.1:8081\n"
                                "cloudfront: http://d111111abcdef8.cloudfront.net\n"
                                "domains: [example.com]\n",
                            "test.yaml", fake_env({{"PORT", "8080"}}));
  };
  SUBCASE("strings and mappings mix, and port 0 may repeat") {
    const auto result =
        load_listen("[\"127.0.0.1:${PORT}\", {address: \"[::1]:0\"}, \"[::1]:0\", \":81\"]");
    REQUIRE(result.errors.empty());
    REQUIRE(result.cfg->listen.size() == 4);
    CHECK(result.cfg->listen[0].port == 8080);
    CHECK(result.cfg->listen[3].host == "0.0.0.0");
  }
  SUBCASE("the same address written two ways is a duplicate") {
    const auto result = load_listen("[\"0.0.0.0:80\", {address: \":80\"}]");
    CHECK(messages(result) ==
          std::vector<std::string>{"test.yaml:2:34: listen[1].address: duplicate listen address "
                                   "\":80\" (same as listen[0])"});
  }
  SUBCASE("an empty item is reported where the list starts") {
    CHECK(messages(load_listen("[{address: \"127.0.0.1:1\"}, ~]")) ==
          std::vector<std::string>{"test.yaml:2:9: listen[1]: missing value"});
  }
  SUBCASE("an empty list is refused") {
    CHECK(messages(load_listen("[]")) ==
          std::vector<std::string>{"test.yaml:2:9: listen: must not be empty"});
  }
  SUBCASE("a mapping needs an address") {
    CHECK(messages(load_listen("[{port: 80}]")) ==
          std::vector<std::string>{
              "test.yaml:2:10: listen[0].address: missing required key",
              "test.yaml:2:11: listen[0].port: unknown key (expected one of: address, mode, "
              "accept_proxy_from, certificates, upstream, sni_routes, on_no_sni, "
              "send_proxy_protocol)"});
  }
}

TEST_CASE("listener modes") {
  const auto load = [](const std::string& listen,
                       const std::string& origin = "http://origin.example.net:8081") {
    return cfg::load_string("version: 1\n"
                            "listen:\n" +
                                listen + "origin: " + origin +
                                "\n"
                                "cloudfront: http://d111111abcdef8.cloudfront.net\n"
                                "domains: [example.com]\n",
                            std::string(WK_FIXTURES_DIR) + "/config/test.yaml", fake_env());
  };
  const auto tail = [](const std::vector<std::string>& lines) {
    // Messages without the fixtures directory in front.
    std::vector<std::string> out;
    for (const auto& l : lines) {
      out.push_back(l.substr(l.find("test.yaml")));
    }
    return out;
  };
  SUBCASE("http is the default mode") {
    const auto r = load("  - \"127.0.0.1:80\"\n");
    REQUIRE(r.errors.empty());
    CHECK(r.cfg->listen[0].mode == cfg::listener_mode::http);
    CHECK(r.cfg->listen[0].accept_proxy_from.empty());
  }
  SUBCASE("passthrough defaults to the origin's host on port 443") {
    const auto r = load("  - {address: \"127.0.0.1:443\", mode: passthrough}\n");
    REQUIRE(r.errors.empty());
    const auto& l = r.cfg->listen[0];
    CHECK(l.mode == cfg::listener_mode::passthrough);
    CHECK(l.passthrough.host == "origin.example.net");
    CHECK(l.passthrough.port == 443);
    CHECK_FALSE(l.passthrough.tls);
    CHECK_FALSE(l.reject_without_sni);
    CHECK(l.passthrough.send_proxy_protocol == cfg::proxy_protocol::off);
  }
  SUBCASE("passthrough with routes, reject and PROXY v2") {
    const auto r = load("  - address: \"[::1]:8443\"\n"
                        "    mode: passthrough\n"
                        "    upstream: \"[::1]:9443\"\n"
                        "    sni_routes: {API.example.com: \"10.0.0.5:443\", \"*.example.com\": "
                        "\"tls.example.net:8443\"}\n"
                        "    on_no_sni: reject\n"
                        "    send_proxy_protocol: v2\n");
    REQUIRE(messages(r).empty());
    const auto& l = r.cfg->listen[0];
    CHECK(l.passthrough.host == "::1");
    CHECK(l.passthrough.port == 9443);
    CHECK(l.reject_without_sni);
    REQUIRE(l.sni_routes.size() == 2);
    CHECK(l.sni_routes[0].pattern == "api.example.com");
    CHECK(l.sni_routes[0].target.host == "10.0.0.5");
    CHECK(l.sni_routes[1].pattern == "*.example.com");
    CHECK(l.sni_routes[1].target.port == 8443);
    CHECK(l.passthrough.send_proxy_protocol == cfg::proxy_protocol::v2);
    CHECK(l.sni_routes[1].target.send_proxy_protocol == cfg::proxy_protocol::v2);
  }
  SUBCASE("tls needs certificates that can be read") {
    const auto r = load("  - address: \"127.0.0.1:443\"\n"
                        "    mode: tls\n"
                        "  - address: \"127.0.0.1:444\"\n"
                        "    mode: tls\n"
                        "    certificates: [{cert: ca.pem, key: missing.key}, {key: ca.pem}]\n");
    CHECK(tail(messages(r)) ==
          std::vector<std::string>{
              "test.yaml:3:5: listen[0].certificates: missing required key (mode: tls)",
              "test.yaml:7:40: listen[1].certificates[0].key: cannot read key file \"" +
                  std::string(WK_FIXTURES_DIR) + "/config/missing.key\": No such file or directory",
              "test.yaml:7:54: listen[1].certificates[1].cert: missing required key"});
  }
  SUBCASE("a tls listener with a certificate") {
    const auto r = load("  - address: \"127.0.0.1:443\"\n"
                        "    mode: tls\n"
                        "    accept_proxy_from: [10.0.0.0/8, \"::1\"]\n"
                        "    certificates:\n"
                        "      - {cert: ca.pem, key: ca.pem, ocsp: ca.pem}\n");
    REQUIRE(messages(r).empty());
    const auto& l = r.cfg->listen[0];
    REQUIRE(l.certificates.size() == 1);
    CHECK(l.certificates[0].cert_file == std::string(WK_FIXTURES_DIR) + "/config/ca.pem");
    CHECK(l.certificates[0].ocsp_file == l.certificates[0].cert_file);
    REQUIRE(l.accept_proxy_from.size() == 2);
    CHECK(l.accept_proxy_from[0].prefix == 8);
    CHECK(l.accept_proxy_from[1].v6);
  }
  SUBCASE("keys of other modes, bad values") {
    const auto r = load("  - address: \"127.0.0.1:80\"\n"
                        "    certificates: [{cert: ca.pem, key: ca.pem}]\n"
                        "    upstream: \"127.0.0.1:443\"\n"
                        "    send_proxy_protocol: v2\n"
                        "    accept_proxy_from: [10.1.0.0/8, 300.0.0.1]\n"
                        "  - address: \"127.0.0.1:443\"\n"
                        "    mode: passthrough\n"
                        "    upstream: origin.example.net\n"
                        "    sni_routes: {\"*\": \"a:1\", \"b.example\": \"b:0\"}\n"
                        "    on_no_sni: drop\n"
                        "    send_proxy_protocol: v3\n"
                        "  - {address: \"127.0.0.1:1\", mode: https}\n");
    CHECK(tail(messages(r)) ==
          std::vector<std::string>{
              "test.yaml:4:19: listen[0].certificates: only applies to a listener with mode: tls",
              "test.yaml:5:15: listen[0].upstream: only applies to a listener with mode: "
              "passthrough",
              "test.yaml:6:26: listen[0].send_proxy_protocol: only applies to a listener with "
              "mode: passthrough (for HTTP, set it on origin or cloudfront)",
              "test.yaml:7:25: listen[0].accept_proxy_from[0]: address bits beyond the prefix "
              "length must be zero in \"10.1.0.0/8\"",
              "test.yaml:7:37: listen[0].accept_proxy_from[1]: expected an IP address or range "
              "like 10.0.0.0/8, got \"300.0.0.1\"",
              "test.yaml:10:15: listen[1].upstream: expected HOST:PORT (a DNS name, IPv4 or "
              "[IPv6], and a port), got \"origin.example.net\"",
              "test.yaml:11:18: listen[1].sni_routes.*: expected a server name or *.suffix, got "
              "\"*\" (connections that match no route go to upstream)",
              "test.yaml:11:43: listen[1].sni_routes.b.example: invalid port \"0\" (expected "
              "1-65535)",
              "test.yaml:12:16: listen[1].on_no_sni: expected upstream or reject, got \"drop\"",
              "test.yaml:13:26: listen[1].send_proxy_protocol: expected off, v1 or v2, got \"v3\"",
              "test.yaml:14:36: listen[2].mode: expected http, tls or passthrough, got \"https\""});
  }
  SUBCASE("upstreams may send the PROXY protocol") {
    const auto r =
        cfg::load_string(minimal.substr(0, minimal.find("origin:")) +
                             "origin: {url: \"http://127.0.0.1:8081\", send_proxy_protocol: v1}\n"
                             "cloudfront: http://d111111abcdef8.cloudfront.net\n"
                             "domains: [example.com]\n",
                         "test.yaml", fake_env());
    REQUIRE(messages(r).empty());
    CHECK(r.cfg->origin.send_proxy_protocol == cfg::proxy_protocol::v1);
    CHECK(r.cfg->origin.key() != "http://127.0.0.1:8081");
    CHECK(r.cfg->cloudfront.send_proxy_protocol == cfg::proxy_protocol::off);
  }
}

TEST_CASE("the admin listener") {
  SUBCASE("off without the section") {
    const auto r = load_with("");
    REQUIRE(r.errors.empty());
    CHECK_FALSE(r.cfg->admin.enabled);
  }
  SUBCASE("an empty section means loopback port 9901, no token") {
    const auto r = load_with("admin: {}\n");
    REQUIRE(messages(r).empty());
    CHECK(r.cfg->admin.enabled);
    CHECK(r.cfg->admin.host == "127.0.0.1");
    CHECK(r.cfg->admin.port == 9901);
    CHECK(r.cfg->admin.token.empty());
  }
  SUBCASE("address and token") {
    const auto r = load_with("admin: {listen: \"[::1]:0\", token: \"${T}\"}\n", {{"T", "abc"}});
    REQUIRE(messages(r).empty());
    CHECK(r.cfg->admin.host == "::1");
    CHECK(r.cfg->admin.port == 0);
    CHECK(r.cfg->admin.token == "abc");
  }
  SUBCASE("public without a token, or on a public listener's address") {
    CHECK(messages(load_with("admin: {listen: \"0.0.0.0:9901\"}\n")) ==
          std::vector<std::string>{"test.yaml:6:17: admin.listen: an admin listener on a "
                                   "non-loopback address needs admin.token"});
    CHECK(messages(load_with("admin: {listen: \"127.0.0.1:8080\"}\n")) ==
          std::vector<std::string>{"test.yaml:6:17: admin.listen: must differ from the public "
                                   "listener \"127.0.0.1:8080\" (listen[0])"});
    CHECK(messages(load_with("admin: {listen: \"localhost:1\", port: 2}\n")).size() == 2);
  }
}

TEST_CASE("address ranges") {
  const auto range = [](std::string_view text) {
    return std::get<cfg::cidr>(cfg::parse_cidr(text));
  };
  const std::uint8_t v4[] = {10, 1, 2, 3};
  const std::uint8_t other4[] = {11, 1, 2, 3};
  const std::uint8_t mapped[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3};
  const std::uint8_t v6[] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  CHECK(range("10.0.0.0/8").contains(v4, 4));
  CHECK(range("10.0.0.0/8").contains(mapped, 16));
  CHECK_FALSE(range("10.0.0.0/8").contains(other4, 4));
  CHECK(range("10.1.2.3").contains(v4, 4));
  CHECK_FALSE(range("10.1.2.2").contains(v4, 4));
  CHECK(range("10.1.2.2/31").contains(v4, 4));
  CHECK(range("0.0.0.0/0").contains(other4, 4));
  CHECK_FALSE(range("0.0.0.0/0").contains(v6, 16));
  CHECK(range("2001:db8::/32").contains(v6, 16));
  CHECK_FALSE(range("2001:db9::/32").contains(v6, 16));
  CHECK_FALSE(range("::/0").contains(v4, 4));
  CHECK(range("::/0").contains(v6, 16));
  CHECK(std::holds_alternative<std::string>(cfg::parse_cidr("10.0.0.0/33")));
  CHECK(std::holds_alternative<std::string>(cfg::parse_cidr("10.0.0.0/")));
  CHECK(std::holds_alternative<std::string>(cfg::parse_cidr("::1/129")));
  CHECK(std::holds_alternative<std::string>(cfg::parse_cidr("example.com")));
}

TEST_CASE("upstreams over https") {
  const auto load_origin = [](const std::string& origin) {
    return cfg::load_string("version: 1\n"
                            "listen: [\"127.0.0.1:8080\"]\n"
                            "origin: " +
                                origin +
                                "\n"
                                "cloudfront: http://d111111abcdef8.cloudfront.net\n"
                                "domains: [example.com]\n",
                            fixtures + "inline.yaml", fake_env());
  };
  SUBCASE("an IP literal gets no SNI unless one is given") {
    const auto result = load_origin("https://10.0.0.1");
    REQUIRE(result.errors.empty());
    CHECK(result.cfg->origin.sni.empty());
    const auto given = load_origin("{url: \"https://10.0.0.1\", sni: Origin.Example.com}");
    REQUIRE(given.errors.empty());
    CHECK(given.cfg->origin.sni == "origin.example.com");
  }
  SUBCASE("an empty sni sends none") {
    const auto result = load_origin("{url: \"https://origin.example.com\", sni: \"\"}");
    REQUIRE(result.errors.empty());
    CHECK(result.cfg->origin.sni.empty());
  }
  SUBCASE("an sni must be a DNS name") {
    CHECK(messages(load_origin("{url: \"https://10.0.0.1\", sni: 10.0.0.1}")) ==
          std::vector<std::string>{fixtures + "inline.yaml:3:40: origin.sni: must be a DNS name, "
                                              "got \"10.0.0.1\""});
  }
  SUBCASE("a ca_file is found next to the config file") {
    const auto result = load_origin("{url: \"https://10.0.0.1\", ca_file: ca.pem, verify: true}");
    REQUIRE(result.errors.empty());
    CHECK(result.cfg->origin.ca_file == fixtures + "ca.pem");
    CHECK(result.cfg->origin.verify);
  }
  SUBCASE("a ca_file that is a directory is refused") {
    CHECK(messages(load_origin("{url: \"https://10.0.0.1\", ca_file: good}")) ==
          std::vector<std::string>{fixtures +
                                   "inline.yaml:3:44: origin.ca_file: cannot read CA "
                                   "file \"" +
                                   fixtures + "good\": not a regular file"});
  }
  SUBCASE("the url is required in the mapping form") {
    CHECK(messages(load_origin("{verify: false}")) ==
          std::vector<std::string>{fixtures + "inline.yaml:3:9: origin.url: missing required key"});
  }
}

TEST_CASE("the domain allow-list") {
  SUBCASE("may live under validation instead") {
    const auto result = cfg::load_string("version: 1\n"
                                         "listen: [\"127.0.0.1:8080\"]\n"
                                         "origin: http://127.0.0.1:8081\n"
                                         "cloudfront: http://d111111abcdef8.cloudfront.net\n"
                                         "validation:\n"
                                         "  domains: [\"*\", \"*.Example.com\"]\n",
                                         "test.yaml", fake_env());
    REQUIRE(result.errors.empty());
    CHECK(result.cfg->validation.domains == std::vector<std::string>{"*", "*.example.com"});
  }
  SUBCASE("may not be empty") {
    const auto result = cfg::load_string("version: 1\n"
                                         "listen: [\"127.0.0.1:8080\"]\n"
                                         "origin: http://127.0.0.1:8081\n"
                                         "cloudfront: http://d111111abcdef8.cloudfront.net\n"
                                         "domains: []\n",
                                         "test.yaml", fake_env());
    CHECK(messages(result) ==
          std::vector<std::string>{"test.yaml:5:10: domains: must not be empty"});
  }
}

TEST_CASE("documents that are not a config mapping") {
  struct row {
    std::string_view name;
    std::string text;
    std::vector<std::string> errors;
  };
  const std::vector<row> rows{
      {"an empty file misses every required key",
       "# nothing here\n",
       {"test.yaml:1:1: version: missing required key",
        "test.yaml:1:1: listen: missing required key",
        "test.yaml:1:1: origin: missing required key",
        "test.yaml:1:1: cloudfront: missing required key",
        "test.yaml:1:1: domains: missing required key"}},
      {"a list at the top level",
       "- a\n- b\n",
       {"test.yaml:1:1: expected a mapping at the top level, got a list"}},
      {"two documents",
       minimal + "---\nversion: 1\n",
       {"test.yaml:7:1: only one YAML document is allowed"}},
      {"a stray comma (yaml-cpp 0.7's LoadAll never returned on it; found by fuzz_config)",
       ",\n",
       {"test.yaml:1:1: version: missing required key",
        "test.yaml:1:1: listen: missing required key",
        "test.yaml:1:1: origin: missing required key",
        "test.yaml:1:1: cloudfront: missing required key",
        "test.yaml:1:1: domains: missing required key"}},
      {"a stray comma after a config",
       minimal + ",\n",
       {"test.yaml:6:1: YAML syntax error: end of map not found"}},
      {"a tab in indentation",
       "version: 1\nlisten:\n\t- x\n",
       {"test.yaml:3:2: YAML syntax error: illegal block entry"}},
  };
  for (const row& r : rows) {
    CAPTURE(r.name);
    const auto result = cfg::load_string(r.text, "test.yaml", fake_env());
    CHECK(messages(result) == r.errors);
    CHECK_FALSE(result.cfg.has_value());
  }
}

TEST_CASE("a file that cannot be read is one error without a line") {
  SUBCASE("missing") {
    const auto result = cfg::load_file(fixtures + "no-such-file.yaml", fake_env());
    CHECK(messages(result) == std::vector<std::string>{
                                  fixtures + "no-such-file.yaml: cannot read file: No such file or "
                                             "directory"});
  }
  SUBCASE("a directory") {
    const auto result = cfg::load_file(fixtures + "good", fake_env());
    CHECK(messages(result) ==
          std::vector<std::string>{fixtures + "good: cannot read file: Is a directory"});
  }
}

TEST_CASE("error messages leave out the parts that are unknown") {
  struct row {
    cfg::error e;
    std::string_view text;
  };
  const row rows[] = {
      {{"a.yaml", 3, 7, "timeouts.connect", "bad"}, "a.yaml:3:7: timeouts.connect: bad"},
      {{"a.yaml", 3, 0, "k", "bad"}, "a.yaml:3: k: bad"},
      {{"a.yaml", 0, 0, "", "bad"}, "a.yaml: bad"},
      {{"", 3, 7, "k", "bad"}, "3:7: k: bad"},
      {{"", 0, 0, "k", "bad"}, "k: bad"},
      {{"", 0, 0, "", "bad"}, "bad"},
  };
  for (const row& r : rows) {
    CHECK(r.e.to_string() == r.text);
  }
}

TEST_CASE("tokens pasted as AWS prints them (no scheme) load with their schemes") {
  const auto r = load_with(
      "tokens:\n"
      "  - domain: example.com\n"
      "    redirect_from: "
      "example.com/.well-known/pki-validation/b315c9ae21284e7918bb9f3f422ac3c7.txt\n"
      "    redirect_to: validation.us-east-1.acm-validations.aws/123456789012/.well-known/"
      "pki-validation/b315c9ae21284e7918bb9f3f422ab1c7.txt\n");
  REQUIRE_MESSAGE(r.cfg, messages(r));
  REQUIRE(r.cfg->tokens.size() == 1);
  const cfg::token& t = r.cfg->tokens[0];
  CHECK(t.file == "b315c9ae21284e7918bb9f3f422ac3c7.txt");
  CHECK(t.redirect_from ==
        "http://example.com/.well-known/pki-validation/b315c9ae21284e7918bb9f3f422ac3c7.txt");
  // redirect_to is the Location of the redirect mode: it must be absolute.
  CHECK(t.redirect_to == "https://validation.us-east-1.acm-validations.aws/123456789012/"
                         ".well-known/pki-validation/b315c9ae21284e7918bb9f3f422ab1c7.txt");
  CHECK(t.to_host == "validation.us-east-1.acm-validations.aws");
}

namespace {

// A directory under the system temp dir, removed with the object.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "wk-load-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    const auto p = path / name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
};

std::string tenant_file(const std::string& domain, const std::string& file) {
  return "domains: [" + domain + "]\n" + "tokens:\n" + "  - domain: " + domain + "\n" +
         "    redirect_from: http://" + domain + "/.well-known/pki-validation/" + file + "\n" +
         "    redirect_to: https://validation.us-east-1.acm-validations.aws/1/" + file + "\n";
}

}  // namespace

TEST_CASE("tokens_dir: one file per tenant, its domains allowed, its tokens tagged") {
  temp_dir d;
  d.write("tenants/dt_b.yaml", tenant_file("b.example", "same.txt"));
  d.write("tenants/a.yaml", "tenant: dt_a\n" + tenant_file("a.example", "same.txt"));
  d.write("tenants/notes.txt", "not a tenant file");
  d.write("tenants/.dt_c.yaml.wkproxy-tmp.yaml", "broken: [");  // a temporary file: ignored
  const std::string config =
      d.write("wkproxy.yaml", minimal + "tokens_dir: tenants   # relative to this file\n");
  const auto r = cfg::load_file(config, fake_env());
  REQUIRE_MESSAGE(r.cfg, messages(r));
  CHECK(r.cfg->tokens_dir == (d.path / "tenants").string());
  REQUIRE(r.cfg->tokens.size() == 2);
  // Files in name order; the same file name on two domains is two tokens.
  CHECK(r.cfg->tokens[0].tenant == "dt_a");
  CHECK(r.cfg->tokens[0].domain == "a.example");
  CHECK(r.cfg->tokens[1].tenant == "dt_b");  // no tenant key: the file name
  CHECK(r.cfg->tokens[1].file == "same.txt");
  const auto& allowed = r.cfg->validation.domains;
  CHECK(std::find(allowed.begin(), allowed.end(), "a.example") != allowed.end());
  CHECK(std::find(allowed.begin(), allowed.end(), "b.example") != allowed.end());
  CHECK(std::find(allowed.begin(), allowed.end(), "example.com") != allowed.end());
}

TEST_CASE("tokens_dir: errors name the tenant file, line and key; a missing directory is one") {
  temp_dir d;
  d.write("tenants/bad.yaml",
          "tenant: dt_bad\n"
          "domains: [bad.example]\n"
          "tokens:\n"
          "  - domain: bad.example\n"
          "    redirect_from: http://bad.example/elsewhere/x.txt\n"
          "    redirect_to: https://validation.us-east-1.acm-validations.aws/1/x\n"
          "colour: blue\n");
  d.write("tenants/syntax.yaml", "tokens: [\n");
  const std::string config = d.write("wkproxy.yaml", minimal + "tokens_dir: tenants\n");
  const auto r = cfg::load_file(config, fake_env());
  CHECK_FALSE(r.cfg);
  const std::string bad = (d.path / "tenants" / "bad.yaml").string();
  const std::string syntax = (d.path / "tenants" / "syntax.yaml").string();
  const auto m = messages(r);
  REQUIRE(m.size() == 3);
  CHECK(m[0] == bad + ":5:20: tokens[0].redirect_from: the path must start with "
                      "/.well-known/pki-validation/");
  CHECK(m[1].starts_with(bad + ":7:1: colour: unknown key (expected one of: tenant, domains, "
                               "tokens)"));
  CHECK(m[2].starts_with(syntax + ":"));
  CHECK(m[2].find("YAML syntax error") != std::string::npos);

  const std::string missing = d.write("other.yaml", minimal + "tokens_dir: nowhere\n");
  const auto r2 = cfg::load_file(missing, fake_env());
  REQUIRE(messages(r2).size() == 1);
  CHECK(messages(r2)[0].starts_with(missing + ":6:13: tokens_dir: cannot read the directory"));
}
