// The pure parts of `wkproxy reload` and `wkproxy upgrade`, and the pid file. Signals, /proc and
// the waiting are tests/integration/test_systemd_notify.py.

#include "app/pid_file.hpp"
#include "cli/control.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

using namespace wk::cli;

namespace {

control_args ok(const std::vector<std::string>& a) {
  auto r = parse_control_args(a);
  REQUIRE_MESSAGE(std::holds_alternative<control_args>(r), std::get<std::string>(r));
  return std::get<control_args>(r);
}

std::string bad(const std::vector<std::string>& a) {
  auto r = parse_control_args(a);
  REQUIRE(std::holds_alternative<std::string>(r));
  return std::get<std::string>(r);
}

}  // namespace

TEST_CASE("reload/upgrade arguments: one way to find the process, an optional timeout") {
  auto a = ok({"--pid-file", "/run/wkproxy/wkproxy.pid"});
  CHECK(a.from == control_args::source::pid_file);
  CHECK(a.path == "/run/wkproxy/wkproxy.pid");
  CHECK_FALSE(a.timeout);
  a = ok({"--ports-file", "p.json", "--timeout", "5s"});
  CHECK(a.from == control_args::source::ports_file);
  CHECK(a.timeout == std::chrono::milliseconds(5000));
  CHECK(ok({"-c", "w.yaml"}).from == control_args::source::config);
  CHECK(ok({"--config", "w.yaml"}).from == control_args::source::config);
  CHECK(ok({"--help"}).help);
  CHECK(bad({}).find("which process") != std::string::npos);
  CHECK(bad({"--pid-file", "a", "-c", "b"}).find("one of") != std::string::npos);
  CHECK(bad({"--pid-file"}) == "--pid-file needs a value");
  CHECK(bad({"--pid-file", "a", "--timeout", "soon"}).find("--timeout") != std::string::npos);
  CHECK(bad({"--pid-file", "a", "--timeout", "0"}).find("--timeout") != std::string::npos);
  CHECK(bad({"--bogus", "x"}) == "unknown argument --bogus");
}

TEST_CASE("the ports file's pid") {
  CHECK(std::get<pid_t>(pid_in_ports_text(R"({"listen": ["127.0.0.1:80"], "pid": 4242})")) == 4242);
  CHECK(std::holds_alternative<std::string>(pid_in_ports_text(R"({"listen": []})")));
  CHECK(std::holds_alternative<std::string>(pid_in_ports_text(R"({"pid": "12"})")));
  CHECK(std::holds_alternative<std::string>(pid_in_ports_text(R"({"pid": 1})")));
  CHECK(std::holds_alternative<std::string>(pid_in_ports_text("{\"pid\": 12")));
  CHECK(std::holds_alternative<std::string>(pid_in_ports_text("12")));
}

TEST_CASE("a process is a wkproxy by its executable or its argv[0]") {
  CHECK(names_wkproxy("/usr/bin/wkproxy", ""));
  CHECK(names_wkproxy("/usr/bin/wkproxy (deleted)", ""));  // the package replaced the file
  CHECK(names_wkproxy("", "wkproxy"));                     // /proc/PID/exe unreadable
  CHECK(names_wkproxy("", "/opt/wkproxy-1.2/bin/wkproxy"));
  CHECK_FALSE(names_wkproxy("/usr/bin/sleep", "sleep"));
  CHECK_FALSE(names_wkproxy("/opt/wkproxy/bin/nginx", "nginx"));  // the directory does not count
  CHECK_FALSE(names_wkproxy("", ""));
}

TEST_CASE("what the process answered") {
  using k = control_outcome::kind;
  CHECK(read_outcome(control_action::reload, "reloaded").what == k::done);
  auto r = read_outcome(control_action::reload, "reload refused: a.yaml:2:1: origin: bad\n");
  CHECK(r.what == k::refused);
  CHECK(r.detail == "a.yaml:2:1: origin: bad");
  CHECK(read_outcome(control_action::reload, "ignored: the process is stopping").what ==
        k::refused);
  CHECK(read_outcome(control_action::reload, "upgraded 12").what == k::other);
  auto u = read_outcome(control_action::upgrade, "upgraded 4321");
  CHECK(u.what == k::done);
  CHECK(u.detail == "4321");
  CHECK(read_outcome(control_action::upgrade, "upgraded x").what == k::other);
  CHECK(read_outcome(control_action::upgrade, "upgrade failed: pid 9 exited").what == k::refused);
  CHECK(read_outcome(control_action::upgrade, "reloaded").what == k::other);
}

TEST_CASE("pid files: written whole, read strictly, removed only while they name us") {
  using namespace wk::app;
  const std::string path = "/tmp/wk-pid-test-" + std::to_string(::getpid());
  REQUIRE(write_pid_file(path, 12345).empty());
  {
    std::ifstream f(path);
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    CHECK(text == "12345\n");
  }
  CHECK(std::get<pid_t>(read_pid_file(path)) == 12345);
  remove_pid_file_if_ours(path, 999);  // a successor's file stays
  CHECK(std::get<pid_t>(read_pid_file(path)) == 12345);
  remove_pid_file_if_ours(path, 12345);
  CHECK(std::holds_alternative<std::string>(read_pid_file(path)));
  CHECK(std::get<pid_t>(parse_pid_text("77")) == 77);
  CHECK(std::holds_alternative<std::string>(parse_pid_text("77\n\n")));
  CHECK(std::holds_alternative<std::string>(parse_pid_text(" 77")));
  CHECK(std::holds_alternative<std::string>(parse_pid_text("1\n")));
  CHECK(std::holds_alternative<std::string>(parse_pid_text("")));
  CHECK(write_pid_file("/nonexistent-dir/x.pid", 5).find("cannot write") != std::string::npos);
}
