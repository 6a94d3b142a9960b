// wkproxy command line. Everything else lives in the libraries.

#include "app/server.hpp"
#include "cli/check.hpp"
#include "cli/control.hpp"
#include "cli/demo.hpp"
#include "cli/loadtest.hpp"
#include "cli/tokens_import.hpp"
#include "cli_help.hpp"
#include "config/load.hpp"
#include "runtime/runtime.hpp"

#include <cstring>
#include <filesystem>
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

// Both generated from docs/wkproxy.1.md, which also makes the man page wkproxy(1).
constexpr std::string_view usage = wk::cli::usage;
constexpr std::string_view help = wk::cli::help;

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
  auto built = wk::runtime::build_runtime(std::move(*loaded.cfg), dns, warnings);
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
    return wk::cli::run_tokens_import(argc - 3, argv + 3);
  }
  if (argc >= 3 && std::string_view(argv[1]) == "tokens" && std::string_view(argv[2]) == "remove") {
    return wk::cli::run_tokens_remove(argc - 3, argv + 3);
  }
  if (argc >= 2 && std::string_view(argv[1]) == "check") {
    return wk::cli::run_check(argc - 2, argv + 2);
  }
  if (argc >= 2 && std::string_view(argv[1]) == "demo") {
    return wk::cli::run_demo(argc - 2, argv + 2, WKPROXY_VERSION, WKPROXY_REVISION);
  }
  if (argc >= 2 && std::string_view(argv[1]) == "reload") {
    return wk::cli::run_reload(argc - 2, argv + 2);
  }
  if (argc >= 2 && std::string_view(argv[1]) == "upgrade") {
    return wk::cli::run_upgrade(argc - 2, argv + 2);
  }
  if (argc >= 2 && std::string_view(argv[1]) == "loadtest") {
    return wk::cli::run_loadtest(argc - 2, argv + 2);
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
    } else if (a == "--pid-file") {
      if (!value(opt.pid_file)) {
        return 2;
      }
      std::error_code ec;
      auto abs = std::filesystem::absolute(opt.pid_file, ec);
      if (!ec) {
        opt.pid_file = abs.lexically_normal().string();
      }
    } else if (a == "-t" || a == "--test") {
      test_only = true;
    } else if (a == "--version") {
      std::cout << "wkproxy " << WKPROXY_VERSION << " (" << WKPROXY_REVISION << ")\n";
      return 0;
    } else if (a == "-h" || a == "--help") {
      std::cout << help;
      return 0;
    } else {
      std::cerr << "wkproxy: unknown argument " << a << "\n" << usage;
      return 2;
    }
  }
  if (opt.config_path.empty()) {
    std::cerr << "wkproxy: no configuration file (-c FILE)\n"
              << usage << "(wkproxy --help for every option)\n";
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
