// SigV4 on the example AWS publishes in "Create a signed AWS API request" (IAM ListUsers,
// AKIDEXAMPLE, 2015-08-30T12:36:00Z): the canonical request, its hash and the signature.
// tests/integration/test_sigv4_botocore.py compares many more requests with botocore.

#include "aws/sigv4.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <string>

namespace a = wk::aws;

namespace {

const a::credentials example_credentials{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                         ""};

// 2015-08-30T12:36:00Z
const auto example_time = std::chrono::system_clock::time_point(std::chrono::seconds(1440938160));

a::request list_users() {
  a::request r;
  r.method = "GET";
  r.path = "/";
  r.query = {{"Version", "2010-05-08"}, {"Action", "ListUsers"}};
  r.headers = {{"Host", "iam.amazonaws.com"},
               {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  return r;
}

}  // namespace

TEST_CASE("the published example: canonical request, string to sign, signature") {
  a::request r = list_users();
  const std::string auth = a::sign(r, example_credentials, "us-east-1", "iam", example_time);
  CHECK(a::canonical_request(r) ==
        "GET\n"
        "/\n"
        "Action=ListUsers&Version=2010-05-08\n"
        "content-type:application/x-www-form-urlencoded; charset=utf-8\n"
        "host:iam.amazonaws.com\n"
        "x-amz-date:20150830T123600Z\n"
        "\n"
        "content-type;host;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(a::sha256_hex(a::canonical_request(r)) ==
        "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
  CHECK(auth == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
                "SignedHeaders=content-type;host;x-amz-date, "
                "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
}

TEST_CASE("the signing key of the published example") {
  const std::string key =
      a::signing_key(example_credentials.secret_access_key, "20150830", "us-east-1", "iam");
  std::string hex;
  for (unsigned char c : key) {
    static constexpr char d[] = "0123456789abcdef";
    hex += d[c >> 4];
    hex += d[c & 0x0f];
  }
  CHECK(hex == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
}

TEST_CASE("temporary credentials sign X-Amz-Security-Token too") {
  a::request r = list_users();
  a::credentials c = example_credentials;
  c.session_token = "session/token+with=chars";
  const std::string auth = a::sign(r, c, "us-east-1", "iam", example_time);
  CHECK(auth.find("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,") !=
        std::string::npos);
  CHECK(a::canonical_request(r).find("x-amz-security-token:session/token+with=chars\n") !=
        std::string::npos);
}

TEST_CASE("encoding: unreserved characters stay, the wire path is encoded once more") {
  CHECK(a::uri_encode("AZaz09-._~", false) == "AZaz09-._~");
  CHECK(a::uri_encode("a b/c:d", false) == "a%20b%2Fc%3Ad");
  CHECK(a::uri_encode("/a b/", true) == "/a%20b/");
  a::request r;
  r.path = "/2020-05-31/managed-certificate/arn%3Aaws%3Acloudfront%3A%3A1%3Adt%2Fx";
  r.headers = {{"Host", "cloudfront.amazonaws.com"}, {"X-Spaced", "  a   b  "}};
  const std::string c = a::canonical_request(r);
  CHECK(c.find("\n/2020-05-31/managed-certificate/"
               "arn%253Aaws%253Acloudfront%253A%253A1%253Adt%252Fx\n") != std::string::npos);
  CHECK(c.find("x-spaced:a b\n") != std::string::npos);
}

TEST_CASE("amz_date is UTC, second precision") {
  CHECK(a::amz_date(example_time) == "20150830T123600Z");
  CHECK(a::amz_date(example_time + std::chrono::milliseconds(999)) == "20150830T123600Z");
}
