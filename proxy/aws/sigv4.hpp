#pragma once
// AWS Signature Version 4 (the "Authorization: AWS4-HMAC-SHA256 ..." header) for the requests
// wkproxy sends to AWS APIs (CloudFront, STS), written with OpenSSL's SHA-256 and HMAC. Pure:
// the caller gives the time and the credentials. The steps follow AWS's "Create a signed AWS
// API request": canonical request, string to sign, signing key, signature. Checked against the
// examples AWS publishes and, request by request, against botocore (tests/integration).

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wk::aws {

struct credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // temporary credentials only; sent as X-Amz-Security-Token
};

// What is signed. `path` is the path as it goes on the wire (already percent-encoded, e.g.
// "/2020-05-31/managed-certificate/arn%3Aaws%3A..."); `query` holds decoded names and values.
// `headers` must include Host; names in any case.
struct request {
  std::string method = "GET";
  std::string path = "/";
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string payload;
};

// Lower-case hex of SHA-256(data).
std::string sha256_hex(std::string_view data);

// HMAC-SHA256(key, data), raw bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);

// "20150830T123600Z" and "20150830" for `t` (UTC).
std::string amz_date(std::chrono::system_clock::time_point t);

// RFC 3986 percent-encoding as SigV4 wants it: everything but A-Z a-z 0-9 - . _ ~ becomes %XX
// (upper-case hex); with `keep_slash`, '/' stays too.
std::string uri_encode(std::string_view s, bool keep_slash);

// The canonical request: method, canonical URI (the wire path encoded once more, as every
// service but S3 wants), canonical query, canonical headers (lower-case names, values trimmed
// with inner runs of spaces collapsed, sorted), signed headers, hex SHA-256 of the payload.
std::string canonical_request(const request& r);

// "content-type;host;x-amz-date": the sorted lower-case header names.
std::string signed_headers(const request& r);

// The signing key: HMAC chain of "AWS4" + secret over date, region, service, "aws4_request".
std::string signing_key(std::string_view secret, std::string_view date, std::string_view region,
                        std::string_view service);

// Adds X-Amz-Date (and X-Amz-Security-Token for temporary credentials) to `r` and returns the
// value of its Authorization header, to be added by the caller.
std::string sign(request& r, const credentials& c, std::string_view region,
                 std::string_view service, std::chrono::system_clock::time_point now);

}  // namespace wk::aws
