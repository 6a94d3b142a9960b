#include "app/pid_file.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace wk::app {

std::string write_pid_file(const std::string& path, pid_t pid) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << pid << '\n';
    f.flush();
    if (!f) {
      return "cannot write " + tmp + ": " + std::strerror(errno);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return "cannot rename " + tmp + " to " + path + ": " + std::strerror(err);
  }
  return {};
}

std::variant<pid_t, std::string> parse_pid_text(std::string_view text) {
  if (text.ends_with('\n')) {
    text.remove_suffix(1);
  }
  if (text.empty() || text.size() > 9) {
    return std::string("not a pid");
  }
  long v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return std::string("not a pid");
    }
    v = v * 10 + (c - '0');
  }
  if (v <= 1) {
    return std::string("not a pid");
  }
  return static_cast<pid_t>(v);
}

std::variant<pid_t, std::string> read_pid_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) {
    return path + ": " + std::strerror(errno);
  }
  std::stringstream s;
  s << f.rdbuf();
  auto text = s.str();
  if (text.size() > 64) {
    text.resize(64);
  }
  auto pid = parse_pid_text(text);
  if (auto* e = std::get_if<std::string>(&pid)) {
    return path + ": " + *e + " (expected a process id and a newline)";
  }
  return pid;
}

void remove_pid_file_if_ours(const std::string& path, pid_t pid) {
  auto named = read_pid_file(path);
  if (auto* p = std::get_if<pid_t>(&named); p != nullptr && *p == pid) {
    std::remove(path.c_str());
  }
}

}  // namespace wk::app
