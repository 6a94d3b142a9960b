#include "aws/sigv4.hpp"

#include "core/ascii.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <ctime>

namespace wk::aws {

namespace {

std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 0x0f];
  }
  return out;
}

// A header value as SigV4 wants it: leading and trailing spaces gone, inner runs of spaces one.
std::string trimmed_value(std::string_view v) {
  v = core::trim(v);
  std::string out;
  out.reserve(v.size());
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = true;
      continue;
    }
    if (space && !out.empty()) {
      out += ' ';
    }
    space = false;
    out += c;
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> sorted_headers(const request& r) {
  std::vector<std::pair<std::string, std::string>> h;
  h.reserve(r.headers.size());
  for (const auto& [name, value] : r.headers) {
    h.emplace_back(core::to_lower(name), trimmed_value(value));
  }
  std::stable_sort(h.begin(), h.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  // A header given twice is one line, values joined by commas (in the order given).
  std::vector<std::pair<std::string, std::string>> merged;
  for (auto& [name, value] : h) {
    if (!merged.empty() && merged.back().first == name) {
      merged.back().second += "," + value;
    } else {
      merged.emplace_back(std::move(name), std::move(value));
    }
  }
  return merged;
}

}  // namespace

std::string sha256_hex(std::string_view data) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> md{};
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md.data());
  return hex(md.data(), md.size());
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), md.data(), &len);
  return {reinterpret_cast<const char*>(md.data()), len};
}

std::string amz_date(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::array<char, 20> buf{};
  const std::size_t n = std::strftime(buf.data(), buf.size(), "%Y%m%dT%H%M%SZ", &tm);
  return {buf.data(), n};
}

std::string uri_encode(std::string_view s, bool keep_slash) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (core::is_alpha(c) || core::is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
        (keep_slash && c == '/')) {
      out += c;
    } else {
      const auto b = static_cast<unsigned char>(c);
      out += '%';
      out += digits[b >> 4];
      out += digits[b & 0x0f];
    }
  }
  return out;
}

std::string signed_headers(const request& r) {
  std::string out;
  for (const auto& [name, value] : sorted_headers(r)) {
    out += (out.empty() ? "" : ";") + name;
  }
  return out;
}

std::string canonical_request(const request& r) {
  std::vector<std::pair<std::string, std::string>> q;
  q.reserve(r.query.size());
  for (const auto& [name, value] : r.query) {
    q.emplace_back(uri_encode(name, false), uri_encode(value, false));
  }
  std::sort(q.begin(), q.end());
  std::string query;
  for (const auto& [name, value] : q) {
    query += (query.empty() ? "" : "&") + name + "=" + value;
  }
  std::string headers;
  for (const auto& [name, value] : sorted_headers(r)) {
    headers += name + ":" + value + "\n";
  }
  const std::string path = r.path.empty() ? std::string("/") : uri_encode(r.path, true);
  return r.method + "\n" + path + "\n" + query + "\n" + headers + "\n" + signed_headers(r) + "\n" +
         sha256_hex(r.payload);
}

std::string signing_key(std::string_view secret, std::string_view date, std::string_view region,
                        std::string_view service) {
  const std::string k_date = hmac_sha256("AWS4" + std::string(secret), date);
  const std::string k_region = hmac_sha256(k_date, region);
  const std::string k_service = hmac_sha256(k_region, service);
  return hmac_sha256(k_service, "aws4_request");
}

std::string sign(request& r, const credentials& c, std::string_view region,
                 std::string_view service, std::chrono::system_clock::time_point now) {
  const std::string stamp = amz_date(now);
  const std::string date = stamp.substr(0, 8);
  r.headers.emplace_back("X-Amz-Date", stamp);
  if (!c.session_token.empty()) {
    r.headers.emplace_back("X-Amz-Security-Token", c.session_token);
  }
  const std::string scope =
      date + "/" + std::string(region) + "/" + std::string(service) + "/aws4_request";
  const std::string to_sign =
      "AWS4-HMAC-SHA256\n" + stamp + "\n" + scope + "\n" + sha256_hex(canonical_request(r));
  const std::string key = signing_key(c.secret_access_key, date, region, service);
  const std::string mac = hmac_sha256(key, to_sign);
  return "AWS4-HMAC-SHA256 Credential=" + c.access_key_id + "/" + scope +
         ", SignedHeaders=" + signed_headers(r) +
         ", Signature=" + hex(reinterpret_cast<const unsigned char*>(mac.data()), mac.size());
}

}  // namespace wk::aws
