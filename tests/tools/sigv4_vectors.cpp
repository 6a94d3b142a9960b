// Signs requests with wk::aws::sign for tests/integration/test_sigv4_botocore.py, which signs
// the same ones with botocore and compares. One JSON object per input line:
//   {"method", "path", "query": [[name, value]...], "headers": [[name, value]...], "payload",
//    "key", "secret", "token", "region", "service", "time": seconds since the epoch}
// One output line each: the Authorization header, or "error: ..." for a line it cannot read.

#include "aws/sigv4.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_to.hpp>

#include <chrono>
#include <exception>
#include <iostream>
#include <string>

namespace json = boost::json;

namespace {

std::vector<std::pair<std::string, std::string>> pairs(const json::value& v) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const json::value& p : v.as_array()) {
    out.emplace_back(json::value_to<std::string>(p.at(0)), json::value_to<std::string>(p.at(1)));
  }
  return out;
}

}  // namespace

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    try {
      const json::value v = json::parse(line);
      wk::aws::request r;
      r.method = json::value_to<std::string>(v.at("method"));
      r.path = json::value_to<std::string>(v.at("path"));
      r.query = pairs(v.at("query"));
      r.headers = pairs(v.at("headers"));
      r.payload = json::value_to<std::string>(v.at("payload"));
      const wk::aws::credentials c{json::value_to<std::string>(v.at("key")),
                                   json::value_to<std::string>(v.at("secret")),
                                   json::value_to<std::string>(v.at("token"))};
      const auto t = std::chrono::system_clock::time_point(
          std::chrono::seconds(v.at("time").to_number<long long>()));
      std::cout << wk::aws::sign(r, c, json::value_to<std::string>(v.at("region")),
                                 json::value_to<std::string>(v.at("service")), t)
                << "\n";
    } catch (const std::exception& e) {
      std::cout << "error: " << e.what() << "\n";
    }
  }
  return 0;
}
