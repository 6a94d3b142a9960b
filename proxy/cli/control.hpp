#pragma once
// `wkproxy reload` and `wkproxy upgrade`: find the running wkproxy (--pid-file, --ports-file or
// -c CONFIG and its pid_file), check that the pid really is a wkproxy, send SIGHUP or SIGUSR2
// and wait for the outcome, which the process reports on an abstract unix socket the command
// listens on (net/outcome_channel.hpp). Exit 0 when the reload was applied / the successor
// serves, 1 when it was refused / failed / nothing answered in time, 2 on bad arguments.
//
// The pure parts (arguments, the ports file's pid, the process-name check, the answer's
// meaning) are declared here and unit-tested; control.cpp adds signals, /proc and the waiting.

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace wk::cli {

enum class control_action { reload, upgrade };

struct control_args {
  enum class source { pid_file, ports_file, config };
  source from = source::pid_file;
  std::string path;
  std::optional<std::chrono::milliseconds> timeout;  // default: from the action (and config)
  bool help = false;
};

// The arguments after the subcommand's name. The reason when they are wrong.
std::variant<control_args, std::string> parse_control_args(const std::vector<std::string>& args);

// The "pid" of a ports file's JSON text.
std::variant<pid_t, std::string> pid_in_ports_text(std::string_view json_text);

// Whether a process is a wkproxy: the target of /proc/PID/exe (may be "" when unreadable, and
// ends in " (deleted)" once a package update replaced the file) or argv[0] from
// /proc/PID/cmdline has a file name that starts with "wkproxy".
bool names_wkproxy(std::string_view exe_path, std::string_view argv0);

// What the process answered, for `action`.
struct control_outcome {
  enum class kind { done, refused, other };  // other: not an answer to this action
  kind what = kind::other;
  std::string detail;  // the reason; for an upgrade done, the successor's pid
};
control_outcome read_outcome(control_action action, std::string_view line);

int run_reload(int argc, char** argv);
int run_upgrade(int argc, char** argv);

}  // namespace wk::cli
