#pragma once
// The pid file (config `pid_file`, `--pid-file`): the decimal pid of the process that serves and
// a newline. Written once the process serves (by a successor when it takes over), replaced
// atomically, removed at exit only while it still names the process removing it.

#include <sys/types.h>

#include <string>
#include <string_view>
#include <variant>

namespace wk::app {

// Writes "PID\n" to PATH.tmp and renames it over `path`. The reason on failure.
std::string write_pid_file(const std::string& path, pid_t pid);

// The pid in a pid file's text: digits, an optional newline, nothing else, above 1.
std::variant<pid_t, std::string> parse_pid_text(std::string_view text);

// The pid `path` names, or why there is none ("PATH: no such file", "PATH: not a pid file").
std::variant<pid_t, std::string> read_pid_file(const std::string& path);

// Removes `path` if it names `pid`; leaves it alone otherwise (a successor's).
void remove_pid_file_if_ours(const std::string& path, pid_t pid);

}  // namespace wk::app
