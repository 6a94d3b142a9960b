#include "cli/control.hpp"

#include "app/pid_file.hpp"
#include "cli_help.hpp"
#include "config/duration.hpp"
#include "config/load.hpp"
#include "net/outcome_channel.hpp"

#include <boost/json.hpp>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include <unistd.h>

namespace wk::cli {

namespace json = boost::json;
using std::chrono::milliseconds;

std::variant<control_args, std::string> parse_control_args(const std::vector<std::string>& args) {
  control_args out;
  int sources = 0;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      out.help = true;
      return out;
    }
    if (i + 1 >= args.size()) {
      return a.starts_with("-") ? a + " needs a value" : "unexpected argument " + a;
    }
    const std::string& v = args[++i];
    if (a == "--pid-file" || a == "--ports-file" || a == "-c" || a == "--config") {
      ++sources;
      out.path = v;
      out.from = a == "--pid-file"     ? control_args::source::pid_file
                 : a == "--ports-file" ? control_args::source::ports_file
                                       : control_args::source::config;
      if (v.empty()) {
        return a + " needs a file";
      }
    } else if (a == "--timeout") {
      auto d = config::parse_duration(v);
      if (!d || d->count() <= 0) {
        return "--timeout: expected a duration such as 30s, got \"" + v + "\"";
      }
      out.timeout = *d;
    } else {
      return "unknown argument " + a;
    }
  }
  if (sources == 0) {
    return "which process? give --pid-file FILE, --ports-file FILE or -c CONFIG";
  }
  if (sources > 1) {
    return "give one of --pid-file, --ports-file and -c";
  }
  return out;
}

std::variant<pid_t, std::string> pid_in_ports_text(std::string_view json_text) {
  boost::system::error_code ec;
  auto v = json::parse(json_text, ec);
  if (ec || !v.is_object()) {
    return std::string("not a ports file (JSON object expected)");
  }
  const auto* pid = v.as_object().if_contains("pid");
  if (pid == nullptr || !pid->is_int64() || pid->as_int64() <= 1 || pid->as_int64() > 999'999'999) {
    return std::string("no \"pid\" in it");
  }
  return static_cast<pid_t>(pid->as_int64());
}

bool names_wkproxy(std::string_view exe_path, std::string_view argv0) {
  const auto named = [](std::string_view path) {
    if (path.ends_with(" (deleted)")) {
      path.remove_suffix(10);
    }
    const auto slash = path.rfind('/');
    const auto name = slash == std::string_view::npos ? path : path.substr(slash + 1);
    return name.starts_with("wkproxy");
  };
  return named(exe_path) || named(argv0);
}

control_outcome read_outcome(control_action action, std::string_view line) {
  while (line.ends_with('\n')) {
    line.remove_suffix(1);
  }
  const auto rest = [&](std::string_view prefix) {
    return std::string(line.substr(prefix.size()));
  };
  if (line.starts_with("ignored: ")) {
    return {control_outcome::kind::refused, rest("ignored: ")};
  }
  if (action == control_action::reload) {
    if (line == "reloaded") {
      return {control_outcome::kind::done, {}};
    }
    if (line.starts_with("reload refused: ")) {
      return {control_outcome::kind::refused, rest("reload refused: ")};
    }
    return {};
  }
  if (line.starts_with("upgraded ")) {
    auto pid = app::parse_pid_text(line.substr(9));
    if (std::holds_alternative<pid_t>(pid)) {
      return {control_outcome::kind::done, rest("upgraded ")};
    }
    return {};
  }
  if (line.starts_with("upgrade failed: ")) {
    return {control_outcome::kind::refused, rest("upgrade failed: ")};
  }
  return {};
}

namespace {

std::string read_small_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str().substr(0, 65536);
}

// The pid the file names (pid file or ports file), or why not.
std::variant<pid_t, std::string> pid_from(const control_args& a, const std::string& file) {
  if (a.from == control_args::source::ports_file) {
    std::ifstream probe(file);
    if (!probe) {
      return file + ": " + std::strerror(errno);
    }
    auto pid = pid_in_ports_text(read_small_file(file));
    if (auto* e = std::get_if<std::string>(&pid)) {
      return file + ": " + *e;
    }
    return pid;
  }
  return app::read_pid_file(file);
}

bool alive(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) {
    return false;
  }
  // A zombie still answers kill(0).
  const auto stat = read_small_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(") ");
  return !stat.empty() && (close == std::string::npos || stat.substr(close + 2, 1) != "Z");
}

// "" when `pid` is a running wkproxy; otherwise what it is.
std::string not_wkproxy(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  if (!alive(pid)) {
    return "which is not running";
  }
  char buf[4096];
  const auto n = ::readlink((proc + "/exe").c_str(), buf, sizeof buf - 1);
  const std::string exe = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  const std::string cmdline = read_small_file(proc + "/cmdline");
  const std::string argv0 = cmdline.substr(0, cmdline.find('\0'));
  if (names_wkproxy(exe, argv0)) {
    return {};
  }
  std::string comm = read_small_file(proc + "/comm");
  while (!comm.empty() && comm.back() == '\n') {
    comm.pop_back();
  }
  return "which is not wkproxy (it is " +
         (comm.empty() ? std::string("another program") : "\"" + comm + "\"") + ")";
}

int run_control(control_action action, int argc, char** argv) {
  const bool upgrade = action == control_action::upgrade;
  const std::string name = upgrade ? "wkproxy upgrade" : "wkproxy reload";
  const std::string_view help = upgrade ? help_upgrade : help_reload;
  auto parsed = parse_control_args(std::vector<std::string>(argv, argv + argc));
  if (auto* e = std::get_if<std::string>(&parsed)) {
    std::cerr << name << ": " << *e << "\n\n" << help;
    return 2;
  }
  const auto& args = std::get<control_args>(parsed);
  if (args.help) {
    std::cout << help;
    return 0;
  }
  // Whoever can run the process's config can also tell whether a reload would be refused.
  milliseconds timeout = upgrade ? milliseconds(35'000) : milliseconds(30'000);
  std::string file = args.path;
  if (args.from == control_args::source::config) {
    auto loaded = config::load_file(args.path, config::process_env());
    if (!loaded.errors.empty()) {
      for (const auto& e : loaded.errors) {
        std::cerr << e.to_string() << '\n';
      }
      std::cerr << name << ": " << args.path << " is invalid"
                << (upgrade ? ": the new process would not start" : ": it would be refused")
                << "; nothing sent\n";
      return 1;
    }
    if (loaded.cfg->pid_file.empty()) {
      std::cerr << name << ": " << args.path
                << " sets no pid_file; give --pid-file or --ports-file instead\n";
      return 1;
    }
    file = loaded.cfg->pid_file;
    if (upgrade) {
      timeout = loaded.cfg->shutdown.upgrade_timeout + milliseconds(5'000);
    }
  }
  timeout = args.timeout.value_or(timeout);
  auto named = pid_from(args, file);
  if (auto* e = std::get_if<std::string>(&named)) {
    std::cerr << name << ": " << *e << "\n";
    return 1;
  }
  const pid_t pid = std::get<pid_t>(named);
  if (auto what = not_wkproxy(pid); !what.empty()) {
    std::cerr << name << ": " << file << " names pid " << pid << ", " << what
              << ": a stale file? no signal sent\n";
    return 1;
  }
  auto listening = net::outcome_listener::listen(pid);
  if (auto* e = std::get_if<std::string>(&listening)) {
    std::cerr << name << ": " << *e << "; no signal sent\n";
    return 1;
  }
  auto& answers = std::get<net::outcome_listener>(listening);
  if (::kill(pid, upgrade ? SIGUSR2 : SIGHUP) != 0) {
    std::cerr << name << ": cannot signal pid " << pid << ": " << std::strerror(errno) << "\n";
    return 1;
  }
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + timeout;
  // A wkproxy from before the answers existed never answers an upgrade: then a new pid in the
  // file that stays alive for 2 s is taken as success.
  std::optional<std::pair<pid_t, std::chrono::steady_clock::time_point>> successor;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto line = answers.wait(milliseconds(100))) {
      const auto got = read_outcome(action, *line);
      if (got.what == control_outcome::kind::done) {
        if (upgrade) {
          std::cout << name << ": pid " << got.detail << " serves; pid " << pid
                    << " drains and exits\n";
        } else {
          std::cout << name << ": pid " << pid << " applied " << file << "'s config\n";
        }
        return 0;
      }
      if (got.what == control_outcome::kind::refused) {
        std::cerr << name << ": " << (upgrade ? "failed" : "refused") << " (pid " << pid
                  << " keeps serving" << (upgrade ? "" : " with its running config") << "):\n";
        std::stringstream lines(got.detail);
        for (std::string l; std::getline(lines, l);) {
          std::cerr << "  " << l << "\n";
        }
        return 1;
      }
      continue;
    }
    const bool old_alive = alive(pid);
    if (upgrade) {
      auto now_named = pid_from(args, file);
      const auto* p = std::get_if<pid_t>(&now_named);
      if (p != nullptr && *p != pid && not_wkproxy(*p).empty()) {
        if (!successor || successor->first != *p) {
          successor.emplace(*p, std::chrono::steady_clock::now());
        } else if (std::chrono::steady_clock::now() - successor->second > milliseconds(2'000) ||
                   !old_alive) {
          std::cout << name << ": pid " << *p << " serves (" << file << " names it; pid " << pid
                    << " did not answer)\n";
          return 0;
        }
        continue;
      }
    }
    if (!old_alive) {
      std::cerr << name << ": pid " << pid << " exited without answering\n";
      return 1;
    }
  }
  std::cerr << name << ": no answer from pid " << pid << " within " << timeout.count()
            << " ms; see its log (a wkproxy that predates `wkproxy "
            << (upgrade ? "upgrade" : "reload") << "` does not answer)\n";
  return 1;
}

}  // namespace

int run_reload(int argc, char** argv) {
  return run_control(control_action::reload, argc, argv);
}

int run_upgrade(int argc, char** argv) {
  return run_control(control_action::upgrade, argc, argv);
}

}  // namespace wk::cli
