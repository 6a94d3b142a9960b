// wkproxy command line. Everything else lives in the libraries.

#include "app/loadtest.hpp"
#include "app/runtime.hpp"
#include "app/server.hpp"
#include "config/load.hpp"
#include "validation/check.hpp"
#include "validation/import.hpp"

#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

#include <unistd.h>

#ifndef WKPROXY_REVISION
#define WKPROXY_REVISION "unknown"
#endif
#ifndef WKPROXY_VERSION
#define WKPROXY_VERSION "0.0.0"
#endif

namespace {

constexpr std::string_view usage = R"(usage: wkproxy -c FILE [--ports-file PATH]
       wkproxy -t -c FILE
       wkproxy tokens import FILE|- [--write CONFIG] [--prefix PATH]
       wkproxy check -c FILE [--via HOST:PORT | --dns] [--ca-file PEM] [--json] [--timeout DUR]
       wkproxy loadtest --target HOST:PORT [--duration DUR] [--event AT:SHELLCMD ...] [--json]
       wkproxy --version | --help

Sends ACME/ACM HTTP validation requests (/.well-known/pki-validation/<token>) for the tenant
domains to CloudFront and every other request to the existing origin, untouched.

  tokens import       turn `aws cloudfront get-managed-certificate-details` output (JSON or
                      XML) into the config's tokens block: printed, or --write CONFIG
                      (in place, the rest of the file kept; refused if the result is invalid)
  check               act as the CA: fetch every token's RedirectFrom through the proxy,
                      follow redirects, compare with RedirectTo; exit 0 only if all pass
  -c, --config FILE   configuration file (YAML)
  -t, --test          check the configuration and exit (0: valid, 1: errors on stderr)
  --ports-file PATH   once listening, write {"listen": ["ip:port", ...]} to PATH
  --version           print the version
  -h, --help          this text

Signals: SIGHUP reloads the configuration (and listeners, certificates, token files);
SIGTERM/SIGINT stop gracefully (a second one stops at once); SIGUSR2 starts this binary again
with the listening sockets handed over, then drains and exits once the new process serves;
SIGUSR1 reopens the access-log and validation event-log files (after logrotate renamed them).
)";

int check_config(const std::string& path) {
  auto loaded = wk::config::load_file(path, wk::config::process_env());
  if (!loaded.errors.empty()) {
    for (const auto& e : loaded.errors) {
      std::cerr << e.to_string() << '\n';
    }
    return 1;
  }
  // What only the runtime checks: certificates and keys that parse and match, CA files that
  // load, static token files.
  wk::upstream::resolver_registry dns;
  std::vector<std::string> warnings;
  auto built = wk::app::build_runtime(std::move(*loaded.cfg), dns, warnings);
  for (const auto& w : warnings) {
    std::cerr << path << ": warning: " << w << '\n';
  }
  if (auto* errors = std::get_if<std::vector<std::string>>(&built)) {
    for (const auto& e : *errors) {
      std::cerr << path << ": " << e << '\n';
    }
    return 1;
  }
  std::cout << path << ": configuration is valid\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string_view(argv[1]) == "tokens" && std::string_view(argv[2]) == "import") {
    return wk::validation::run_tokens_import(argc - 3, argv + 3);
  }
  if (argc >= 2 && std::string_view(argv[1]) == "check") {
    return wk::validation::run_check(argc - 2, argv + 2);
  }
  if (argc >= 2 && std::string_view(argv[1]) == "loadtest") {
    return wk::app::run_loadtest(argc - 2, argv + 2);
  }
  wk::app::server_options opt;
  bool test_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) {
        std::cerr << "wkproxy: " << a << " needs a value\n" << usage;
        return false;
      }
      out = argv[++i];
      return true;
    };
    if (a == "-c" || a == "--config") {
      if (!value(opt.config_path)) {
        return 2;
      }
    } else if (a == "--ports-file") {
      if (!value(opt.ports_file)) {
        return 2;
      }
    } else if (a == "-t" || a == "--test") {
      test_only = true;
    } else if (a == "--version") {
      std::cout << "wkproxy " << WKPROXY_VERSION << " (" << WKPROXY_REVISION << ")\n";
      return 0;
    } else if (a == "-h" || a == "--help") {
      std::cout << usage;
      return 0;
    } else {
      std::cerr << "wkproxy: unknown argument " << a << "\n" << usage;
      return 2;
    }
  }
  if (opt.config_path.empty()) {
    std::cerr << "wkproxy: no configuration file (-c FILE)\n" << usage;
    return 2;
  }
  if (test_only) {
    return check_config(opt.config_path);
  }
  // Resolved now: if the file is replaced by a newer binary, SIGUSR2 starts the new one.
  char exe[4096];
  auto n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  opt.exe = n > 0 ? std::string(exe, static_cast<std::size_t>(n)) : std::string(argv[0]);
  opt.args.assign(argv, argv + argc);
  opt.version = WKPROXY_VERSION;
  opt.revision = WKPROXY_REVISION;
  return wk::app::run_server(opt);
}
