#include "observe/access_log.hpp"
#include "observe/log.hpp"
#include "observe/log_file.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <variant>

#include <sys/stat.h>
#include <unistd.h>

namespace obs = wk::observe;
namespace cfg = wk::config;
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

// 2026-11-28T17:42:31.250Z
std::chrono::system_clock::time_point example_time() {
  using namespace std::chrono;
  return sys_days{year{2026} / November / 28} + hours{17} + minutes{42} + seconds{31} +
         milliseconds{250};
}

obs::access_record example() {
  obs::access_record r;
  r.time = example_time();
  r.client = "192.0.2.10:51234";
  r.host = "example.com";
  r.method = "GET";
  r.target = "/index.html?q=1";
  r.version = 11;
  r.route = "origin";
  r.upstream = "origin";
  r.status = 200;
  r.bytes_out = 5120;
  r.duration_ms = 1.5;
  r.referer = "https://example.com/start";
  r.user_agent = "curl/8.0.1";
  return r;
}

std::string combined(const obs::access_record& r) {
  std::string out;
  obs::format_combined(r, out);
  return out;
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// A fresh directory under the system temp dir, removed at the end of the test.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "wk-access-log-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
};

}  // namespace

TEST_CASE("the combined format is Apache's and nginx's") {
  SUBCASE("a complete request") {
    CHECK(combined(example()) ==
          "192.0.2.10 - - [28/Nov/2026:17:42:31 +0000] \"GET /index.html?q=1 HTTP/1.1\" 200 5120 "
          "\"https://example.com/start\" \"curl/8.0.1\"\n");
  }
  SUBCASE("no body bytes are written as - (like %b), missing fields as -") {
    auto r = example();
    r.bytes_out = 0;
    r.status = 304;
    r.referer = "";
    r.user_agent = "";
    r.version = 10;
    r.method = "HEAD";
    CHECK(combined(r) == "192.0.2.10 - - [28/Nov/2026:17:42:31 +0000] \"HEAD /index.html?q=1 "
                         "HTTP/1.0\" 304 - \"-\" \"-\"\n");
  }
  SUBCASE("an IPv6 client loses its brackets and port") {
    auto r = example();
    r.client = "[2001:db8::1]:443";
    CHECK(combined(r).starts_with("2001:db8::1 - - ["));
  }
  SUBCASE("a request whose head was never parsed has the request field - - -") {
    obs::access_record r;
    r.time = example_time();
    r.client = "127.0.0.1:40000";
    r.status = 408;
    r.error = "header_timeout";
    CHECK(combined(r) ==
          "127.0.0.1 - - [28/Nov/2026:17:42:31 +0000] \"- - -\" 408 - \"-\" \"-\"\n");
  }
  SUBCASE("a passthrough connection: no method, no status, bytes relayed") {
    obs::access_record r;
    r.time = example_time();
    r.client = "127.0.0.1:40000";
    r.host = "example.com";  // the SNI
    r.target = "h2";         // the ALPN
    r.route = "passthrough";
    r.bytes_in = 517;
    r.bytes_out = 4000;
    CHECK(combined(r) ==
          "127.0.0.1 - - [28/Nov/2026:17:42:31 +0000] \"- - -\" 0 4000 \"-\" \"-\"\n");
  }
  SUBCASE("quotes, backslashes, control and non-ASCII bytes are escaped as \\xHH") {
    auto r = example();
    r.user_agent = "a\"b\\c\td\x7f\xc3\xa9";
    r.referer = "\"";
    r.target = "/x\"y";
    const auto line = combined(r);
    CHECK(line == "192.0.2.10 - - [28/Nov/2026:17:42:31 +0000] \"GET /x\\x22y HTTP/1.1\" 200 5120 "
                  "\"\\x22\" \"a\\x22b\\x5Cc\\x09d\\x7F\\xC3\\xA9\"\n");
    // Exactly one newline, at the end: a line never breaks whatever a client sends.
    CHECK(line.find('\n') == line.size() - 1);
  }
  SUBCASE("a single digit day is padded") {
    auto r = example();
    using namespace std::chrono;
    r.time = sys_days{year{2027} / January / 3} + hours{4} + minutes{5} + seconds{6};
    CHECK(combined(r).find("[03/Jan/2027:04:05:06 +0000]") != std::string::npos);
  }
}

TEST_CASE("the JSON format names every field, the referer and user agent included") {
  auto r = example();
  r.user_agent = "Mozilla/5.0 \"quoted\"\n";
  std::string line;
  obs::format_json(r, line);
  REQUIRE(line.ends_with("}\n"));
  const auto v = json::parse(line).as_object();
  CHECK(v.at("time").as_string() == "2026-11-28T17:42:31.250Z");
  CHECK(v.at("client").as_string() == "192.0.2.10:51234");
  CHECK(v.at("method").as_string() == "GET");
  CHECK(v.at("status").as_int64() == 200);
  CHECK(v.at("bytes_out").as_int64() == 5120);
  CHECK(v.at("referer").as_string() == "https://example.com/start");
  CHECK(v.at("user_agent").as_string() == "Mozilla/5.0 \"quoted\"\n");
  CHECK(v.at("early_answer").as_string().empty());
  r.early_answer = "drained";
  line.clear();
  obs::format_json(r, line);
  CHECK(json::parse(line).as_object().at("early_answer").as_string() == "drained");
}

TEST_CASE("the access log writes whole lines to its file and follows a new one") {
  temp_dir dir;
  const auto first_path = (dir.path / "access.log").string();
  auto opened = obs::log_file::open(first_path);
  REQUIRE(std::holds_alternative<std::shared_ptr<const obs::log_file>>(opened));
  auto first = std::get<0>(opened);
  const mode_t umask_now = ::umask(0);  // read it, then put it back
  ::umask(umask_now);
  struct stat st {};
  REQUIRE(::stat(first_path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == (0640 & ~umask_now));

  obs::access_log log;
  log.write(example());  // no destination yet: dropped
  log.flush();
  log.set_destination(first, cfg::log_format::combined);
  log.write(example());
  CHECK(read_file(first_path).empty());  // buffered until a flush

  // logrotate: rename, then reopen at the same path. The buffered line goes to the old file.
  const auto rotated = (dir.path / "access.log.1").string();
  REQUIRE(std::rename(first_path.c_str(), rotated.c_str()) == 0);
  auto second = std::get<0>(obs::log_file::open(first_path));
  log.set_destination(second, cfg::log_format::json);
  CHECK(read_file(rotated) == combined(example()));
  log.write(example());
  log.flush();
  std::string json_line;
  obs::format_json(example(), json_line);
  CHECK(read_file(first_path) == json_line);
  CHECK(read_file(rotated) == combined(example()));

  log.set_destination(nullptr, cfg::log_format::json);  // access_log: off
  log.write(example());
  log.flush();
  CHECK(read_file(first_path) == json_line);
}

TEST_CASE("a file that cannot be opened is an error value naming it") {
  const auto opened = obs::log_file::open("/nonexistent-dir-wk/access.log");
  REQUIRE(std::holds_alternative<std::string>(opened));
  CHECK(std::get<std::string>(opened) ==
        "cannot open /nonexistent-dir-wk/access.log: No such file or directory");
}

TEST_CASE("the diagnostic log drops messages below its level") {
  obs::set_level(obs::level::warn);
  CHECK_FALSE(obs::enabled(obs::level::debug));
  CHECK_FALSE(obs::enabled(obs::level::info));
  CHECK(obs::enabled(obs::level::warn));
  CHECK(obs::enabled(obs::level::error));
  obs::set_level(obs::level::debug);
  CHECK(obs::enabled(obs::level::debug));
  obs::set_level(obs::level::info);
  CHECK_FALSE(obs::enabled(obs::level::debug));
  CHECK(obs::enabled(obs::level::info));
}
