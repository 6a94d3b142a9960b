#include "cli/tokens_import.hpp"

#include "config/load.hpp"
#include "config/upstream_url.hpp"

#include <doctest/doctest.h>

#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace v = wk::cli;
namespace cfg = wk::config;

namespace {

constexpr std::string_view prefix = v::default_token_prefix;

constexpr std::string_view apex_from = "http://example.com/.well-known/pki-validation/1a2b3c.txt";
constexpr std::string_view apex_to =
    "https://validation.us-east-1.acm-validations.aws/123456789012/.well-known/pki-validation/"
    "1a2b3c.txt";
constexpr std::string_view www_from =
    "http://www.example.com/.well-known/pki-validation/4d5e6f.txt";
constexpr std::string_view www_to =
    "https://validation.us-east-1.acm-validations.aws/123456789012/.well-known/pki-validation/"
    "4d5e6f.txt";

// `aws cloudfront get-managed-certificate-details --identifier tenant` (the CLI's JSON).
constexpr std::string_view details_json = R"({
    "ManagedCertificateDetails": {
        "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
        "CertificateStatus": "pending-validation",
        "ValidationTokenHost": "self-hosted",
        "ValidationTokenDetails": [
            {
                "Domain": "example.com",
                "RedirectTo": "https://validation.us-east-1.acm-validations.aws/123456789012/.well-known/pki-validation/1a2b3c.txt",
                "RedirectFrom": "http://example.com/.well-known/pki-validation/1a2b3c.txt"
            },
            {
                "Domain": "www.example.com",
                "RedirectTo": "https://validation.us-east-1.acm-validations.aws/123456789012/.well-known/pki-validation/4d5e6f.txt",
                "RedirectFrom": "http://www.example.com/.well-known/pki-validation/4d5e6f.txt"
            }
        ]
    }
}
)";

// The same details as the GetManagedCertificateDetails API returns them (XML).
constexpr std::string_view details_xml = R"(<?xml version="1.0" encoding="UTF-8"?>
<GetManagedCertificateDetailsResponse xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">
  <GetManagedCertificateDetailsResult>
    <ManagedCertificateDetails>
      <CertificateArn>arn:aws:acm:us-east-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0</CertificateArn>
      <CertificateStatus>pending-validation</CertificateStatus>
      <ValidationTokenHost>self-hosted</ValidationTokenHost>
      <ValidationTokenDetails>
        <ValidationTokenDetail>
          <Domain>example.com</Domain>
          <RedirectTo>https://validation.us-east-1.acm-validations.aws/123456789012/.well-known/pki-validation/1a2b3c.txt</RedirectTo>
          <RedirectFrom>http://example.com/.well-known/pki-validation/1a2b3c.txt</RedirectFrom>
        </ValidationTokenDetail>
        <ValidationTokenDetail>
          <Domain>www.example.com</Domain>
          <RedirectTo>https://validation.us-east-1.acm-validations.aws/123456789012/.well-known/pki-validation/4d5e6f.txt</RedirectTo>
          <RedirectFrom>http://www.example.com/.well-known/pki-validation/4d5e6f.txt</RedirectFrom>
        </ValidationTokenDetail>
      </ValidationTokenDetails>
    </ManagedCertificateDetails>
  </GetManagedCertificateDetailsResult>
</GetManagedCertificateDetailsResponse>
)";

// JSON details with the given status, token host and entries (each a JSON object text).
std::string json_with(std::string_view status, std::string_view host,
                      const std::vector<std::string>& entries) {
  std::string list;
  for (const std::string& e : entries) {
    list += (list.empty() ? "" : ",") + e;
  }
  return R"({"ManagedCertificateDetails": {"CertificateStatus": ")" + std::string(status) +
         R"(", "ValidationTokenHost": ")" + std::string(host) +
         R"(", "ValidationTokenDetails": [)" + list + "]}}";
}

std::string entry(std::string_view domain, std::string_view from, std::string_view to) {
  return R"({"Domain": ")" + std::string(domain) + R"(", "RedirectFrom": ")" + std::string(from) +
         R"(", "RedirectTo": ")" + std::string(to) + R"("})";
}

const std::string apex = entry("example.com", apex_from, apex_to);
const std::string www = entry("www.example.com", www_from, www_to);

bool contains(const std::vector<std::string>& items, std::string_view part) {
  for (const std::string& s : items) {
    if (s.find(part) != std::string::npos) {
      return true;
    }
  }
  return false;
}

void check_two_tokens(const v::certificate_details& d) {
  CHECK(d.errors.empty());
  CHECK(d.warnings.empty());
  CHECK(d.status == "pending-validation");
  CHECK(d.token_host == "self-hosted");
  CHECK(d.certificate_arn ==
        "arn:aws:acm:us-east-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0");
  REQUIRE(d.tokens.size() == 2);
  CHECK(d.tokens[0].domain == "example.com");
  CHECK(d.tokens[0].redirect_from == apex_from);
  CHECK(d.tokens[0].redirect_to == apex_to);
  CHECK(d.tokens[1].domain == "www.example.com");
  CHECK(d.tokens[1].redirect_from == www_from);
  CHECK(d.tokens[1].redirect_to == www_to);
}

std::optional<std::string> no_env(std::string_view) {
  return std::nullopt;
}

// Loads a config text as `wkproxy -t` would; returns the errors, one per line.
std::string load_errors(const std::string& text) {
  const auto loaded = cfg::load_string(text, "test.yaml", no_env);
  std::string out;
  for (const auto& e : loaded.errors) {
    out += e.to_string() + "\n";
  }
  return out;
}

const std::vector<v::imported_token> two_tokens{
    {"example.com", std::string(apex_from), std::string(apex_to), {}},
    {"www.example.com", std::string(www_from), std::string(www_to), {}}};

const std::string token_lines =
    "tokens:\n"
    "  - domain: example.com\n"
    "    redirect_from: \"http://example.com/.well-known/pki-validation/1a2b3c.txt\"\n"
    "    redirect_to: \"https://validation.us-east-1.acm-validations.aws/123456789012/"
    ".well-known/pki-validation/1a2b3c.txt\"\n"
    "  - domain: www.example.com\n"
    "    redirect_from: \"http://www.example.com/.well-known/pki-validation/4d5e6f.txt\"\n"
    "    redirect_to: \"https://validation.us-east-1.acm-validations.aws/123456789012/"
    ".well-known/pki-validation/4d5e6f.txt\"\n";

constexpr std::string_view head = "version: 1\n"
                                  "listen: [\"127.0.0.1:8080\"]\n"
                                  "origin: http://127.0.0.1:8081\n"
                                  "cloudfront: http://d111111abcdef8.cloudfront.net\n";

std::string fixture(std::string_view name) {
  std::ifstream in(std::string(WK_FIXTURES_DIR) + "/aws/" + std::string(name), std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing fixture " << name);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("the AWS CLI reference's example output imports, URLs without a scheme included") {
  // RedirectFrom and RedirectTo without a scheme, and file names that differ (…ab1c7 / …ac3c7).
  for (std::string_view name : {"get-managed-certificate-details.reference.json",
                                "get-managed-certificate-details.reference.xml"}) {
    CAPTURE(name);
    const auto d = v::parse_certificate_details(fixture(name), prefix);
    REQUIRE(d.errors.empty());
    CHECK(d.warnings.empty());
    CHECK(d.certificate_arn ==
          "arn:aws:acm:us-east-1:123456789012:certificate/655dc1fe-6d37-451d-a013-c2db3a034abc");
    CHECK(d.status == "pending-validation");
    REQUIRE(d.tokens.size() == 1);
    CHECK(d.tokens[0].domain == "example.com");
    CHECK(d.tokens[0].redirect_from ==
          "http://example.com/.well-known/pki-validation/b315c9ae21284e7918bb9f3f422ac3c7.txt");
    CHECK(d.tokens[0].redirect_to ==
          "https://validation.us-east-1.acm-validations.aws/123456789012/.well-known/"
          "pki-validation/b315c9ae21284e7918bb9f3f422ab1c7.txt");
    // What is written loads: the config sees the URLs with their schemes.
    const std::string text = std::string(head) + v::render_tokens_yaml(d);
    const auto loaded = cfg::load_string(text, "imported.yaml", no_env);
    REQUIRE_MESSAGE(loaded.cfg, (loaded.errors.empty() ? "" : loaded.errors[0].to_string()));
    REQUIRE(loaded.cfg->tokens.size() == 1);
    CHECK(loaded.cfg->tokens[0].file == "b315c9ae21284e7918bb9f3f422ac3c7.txt");
    CHECK(loaded.cfg->tokens[0].to_target ==
          "/123456789012/.well-known/pki-validation/b315c9ae21284e7918bb9f3f422ab1c7.txt");
  }
}

TEST_CASE(
    "schemes given or not, in any mix; a domain without both URLs is skipped with a warning") {
  const auto d =
      v::parse_certificate_details(fixture("get-managed-certificate-details.mixed.json"), prefix);
  REQUIRE(d.errors.empty());
  REQUIRE(d.tokens.size() == 2);
  CHECK(d.tokens[0].redirect_from ==
        "http://shop.example.net/.well-known/pki-validation/0a1b2c3d4e5f60718293a4b5c6d7e8f0.txt");
  CHECK(d.tokens[0].redirect_to.starts_with("https://validation.us-east-1.acm-validations.aws/"));
  CHECK(d.tokens[1].domain == "www.shop.example.net");
  CHECK(d.tokens[1].redirect_to ==
        "https://validation.us-east-1.acm-validations.aws/123456789012/.well-known/"
        "pki-validation/99887766554433221100ffeeddccbbaa.txt");
  REQUIRE(d.warnings.size() == 2);
  CHECK(d.warnings[0].find("api.shop.example.net: no RedirectFrom and RedirectTo") !=
        std::string::npos);
  CHECK(d.warnings[1].find("static.shop.example.net: no RedirectTo") != std::string::npos);
}

TEST_CASE("a scheme other than the expected one is still refused") {
  CHECK(std::holds_alternative<std::string>(
      cfg::parse_redirect_from("https://example.com/.well-known/pki-validation/a.txt", prefix)));
  CHECK(std::holds_alternative<std::string>(cfg::parse_redirect_to(
      "http://validation.us-east-1.acm-validations.aws/1/.well-known/pki-validation/a.txt")));
  CHECK(std::holds_alternative<std::string>(
      cfg::parse_redirect_from("ftp://example.com/.well-known/pki-validation/a.txt", prefix)));
}

TEST_CASE("the CLI's JSON output gives both tokens with their domains") {
  check_two_tokens(v::parse_certificate_details(details_json, prefix));
}

TEST_CASE("the API's XML gives the same tokens, whatever the root element") {
  SUBCASE("GetManagedCertificateDetailsResponse with a namespace") {
    check_two_tokens(v::parse_certificate_details(details_xml, prefix));
  }
  const std::string_view xml = details_xml;
  const auto payload_begin = xml.find("<ManagedCertificateDetails>");
  const auto payload_end = xml.find("</ManagedCertificateDetails>") +
                           std::string_view("</ManagedCertificateDetails>").size();
  const std::string payload(xml.substr(payload_begin, payload_end - payload_begin));
  SUBCASE("GetManagedCertificateDetailsResult") {
    check_two_tokens(v::parse_certificate_details("<GetManagedCertificateDetailsResult>" + payload +
                                                      "</GetManagedCertificateDetailsResult>",
                                                  prefix));
  }
  SUBCASE("ManagedCertificateDetails itself, after blank lines") {
    check_two_tokens(v::parse_certificate_details("\n\n  " + payload, prefix));
  }
  SUBCASE("the REST payload: ManagedCertificateDetails with a namespace") {
    std::string rest = payload;
    rest.replace(
        0, std::string_view("<ManagedCertificateDetails>").size(),
        R"(<ManagedCertificateDetails xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">)");
    check_two_tokens(v::parse_certificate_details(rest, prefix));
  }
  SUBCASE("list items called <member>") {
    std::string members = payload;
    for (std::string_view tag : {"<ValidationTokenDetail>", "</ValidationTokenDetail>"}) {
      for (auto at = members.find(tag); at != std::string::npos; at = members.find(tag)) {
        members.replace(at, tag.size(), tag[1] == '/' ? "</member>" : "<member>");
      }
    }
    check_two_tokens(v::parse_certificate_details(members, prefix));
  }
}

TEST_CASE("input that is not certificate details is refused with a clear reason") {
  struct row {
    std::string_view name;
    std::string input;
    std::string_view error;
  };
  const row rows[] = {
      {"empty", "  \n", "not get-managed-certificate-details output: the input is empty"},
      {"text", "CertificateStatus: issued",
       "not get-managed-certificate-details output: expected JSON"},
      {"broken JSON", R"({"ManagedCertificateDetails": {)", "invalid JSON at line 1"},
      {"JSON list", "[1]", "not get-managed-certificate-details output: expected JSON"},
      {"other JSON", R"({"DistributionTenant": {}})",
       "not get-managed-certificate-details output: no ManagedCertificateDetails"},
      {"details not an object", R"({"ManagedCertificateDetails": []})",
       "ManagedCertificateDetails: expected an object, got an array"},
      {"list not an array", R"({"ManagedCertificateDetails": {"ValidationTokenDetails": {}}})",
       "ValidationTokenDetails: expected an array, got an object"},
      {"no list", R"({"ManagedCertificateDetails": {"CertificateStatus": "issued"}})",
       "no ValidationTokenDetails: nothing to import"},
      {"empty list", json_with("pending-validation", "self-hosted", {}),
       "ValidationTokenDetails is empty"},
      {"status not a string", R"({"ManagedCertificateDetails": {"CertificateStatus": 3}})",
       "CertificateStatus: expected a string, got a number"},
      {"entry not an object", json_with("pending-validation", "self-hosted", {apex, "\"x\""}),
       "ValidationTokenDetails[1]: expected an object, got a string"},
      {"Domain not a string",
       json_with("issued", "self-hosted",
                 {R"({"Domain": true, "RedirectFrom": "x", "RedirectTo": "y"})"}),
       "ValidationTokenDetails[0].Domain: expected a string, got a boolean"},
      {"no Domain",
       json_with("issued", "self-hosted",
                 {R"({"RedirectFrom": ")" + std::string(apex_from) + R"(", "RedirectTo": ")" +
                  std::string(apex_to) + R"("})"}),
       "ValidationTokenDetails[0]: no Domain"},
      {"http RedirectTo",
       json_with("pending-validation", "self-hosted",
                 {apex, entry("www.example.com", www_from,
                              "http://validation.us-east-1.acm-validations.aws/123456789012/"
                              ".well-known/pki-validation/4d5e6f.txt")}),
       "ValidationTokenDetails[1].RedirectTo: must start with https://"},
      {"https RedirectFrom",
       json_with(
           "pending-validation", "self-hosted",
           {entry("example.com", "https://example.com/.well-known/pki-validation/a.txt", apex_to)}),
       "ValidationTokenDetails[0].RedirectFrom: must start with http://"},
      {"RedirectFrom outside the prefix",
       json_with(
           "pending-validation", "self-hosted",
           {entry("example.com", "http://example.com/.well-known/acme-challenge/a.txt", apex_to)}),
       "ValidationTokenDetails[0].RedirectFrom: the path must start with "
       "/.well-known/pki-validation/"},
      {"RedirectFrom with two segments",
       json_with("pending-validation", "self-hosted",
                 {entry("example.com", "http://example.com/.well-known/pki-validation/a/b.txt",
                        apex_to)}),
       "ValidationTokenDetails[0].RedirectFrom: the file name must be one segment"},
      {"domain mismatch",
       json_with("pending-validation", "self-hosted", {entry("example.com", www_from, www_to)}),
       "ValidationTokenDetails[0].RedirectFrom: the host \"www.example.com\" is not the Domain "
       "\"example.com\""},
      {"conflicting duplicate",
       json_with("pending-validation", "self-hosted",
                 {apex, entry("example.com", apex_from, www_to)}),
       "ValidationTokenDetails[1]: another entry has the same RedirectFrom"},
      {"broken XML", "<ManagedCertificateDetails><Domain>", "invalid XML at line"},
      {"other XML root", "<DistributionTenant/>",
       "not get-managed-certificate-details output: root element <DistributionTenant>"},
      {"XML result without details",
       "<GetManagedCertificateDetailsResult></GetManagedCertificateDetailsResult>",
       "not get-managed-certificate-details output: no ManagedCertificateDetails"},
      {"XML element where text belongs",
       "<ManagedCertificateDetails><CertificateStatus><a/></CertificateStatus>"
       "</ManagedCertificateDetails>",
       "CertificateStatus: expected text, got elements"},
      {"XML without a list",
       "<ManagedCertificateDetails><CertificateStatus>issued</CertificateStatus>"
       "</ManagedCertificateDetails>",
       "no ValidationTokenDetails"},
      {"an AWS error answer",
       "<ErrorResponse><Error><Code>AccessDenied</Code><Message>not allowed</Message></Error>"
       "</ErrorResponse>",
       "AWS returned an error instead of certificate details: AccessDenied: not allowed"},
  };
  for (const row& r : rows) {
    CAPTURE(r.name);
    const auto d = v::parse_certificate_details(r.input, prefix);
    CAPTURE(d.errors.empty() ? std::string() : d.errors.front());
    CHECK(contains(d.errors, r.error));
  }
}

// Issue 18, finding 8: Boost.PropertyTree's XML parser (RapidXML) recurses once per element
// level and crashed with SIGSEGV at about 50,000 levels. Nesting is refused before parsing, as
// deep as the JSON parser's own limit (32).
TEST_CASE("deeply nested input is refused before parsing, without crashing") {
  constexpr int levels = 100'000;
  SUBCASE("XML, 100,000 levels") {
    std::string xml;
    for (int i = 0; i < levels; ++i) {
      xml += "<ManagedCertificateDetails>";
    }
    for (int i = 0; i < levels; ++i) {
      xml += "</ManagedCertificateDetails>";
    }
    const auto d = v::parse_certificate_details(xml, prefix);
    CAPTURE(d.errors.empty() ? std::string() : d.errors.front());
    CHECK(d.errors.size() == 1);
    CHECK(contains(d.errors, "XML nested deeper than 32 elements (line 1, column 865): "
                             "refused before parsing"));
    CHECK(d.tokens.empty());
  }
  SUBCASE("XML, 100,000 levels never closed, behind a declaration and a comment") {
    std::string xml = "<?xml version=\"1.0\"?>\n<!-- generated -->\n";
    for (int i = 0; i < levels; ++i) {
      xml += "<a x='1'>\n";
    }
    const auto d = v::parse_certificate_details(xml, prefix);
    CHECK(contains(d.errors, "XML nested deeper than 32 elements (line 35, column 1)"));
  }
  SUBCASE("JSON, 100,000 levels, says the same") {
    const std::string json = "{\"ManagedCertificateDetails\": " + std::string(levels, '[') +
                             std::string(levels, ']') + "}";
    const auto d = v::parse_certificate_details(json, prefix);
    CAPTURE(d.errors.empty() ? std::string() : d.errors.front());
    CHECK(contains(d.errors, "JSON nested deeper than 32 levels (line 1, column 62): "
                             "refused (certificate details nest 4 deep)"));
  }
}

// What the API sends stays accepted, whatever XML it is wrapped in: the depth check reads
// comments, CDATA, processing instructions, a DOCTYPE and attribute values as the parser does.
TEST_CASE("real API XML with every XML construct around it still imports") {
  std::string xml(details_xml);
  const auto replace = [&](std::string_view what, std::string_view with) {
    const auto at = xml.find(what);
    REQUIRE(at != std::string::npos);
    xml.replace(at, what.size(), with);
  };
  replace("<GetManagedCertificateDetailsResponse ",
          "<!DOCTYPE GetManagedCertificateDetailsResponse [ <!ELEMENT a ANY> ]>\n"
          "<?xml-stylesheet href=\"a.xsl\" type=\"text/xsl\"?>\n"
          "<!-- <a><a><a><a> a comment is not nesting </a> -->\n"
          "<GetManagedCertificateDetailsResponse note=\"a > b / c </d>\" other='<e/>' ");
  replace("<CertificateStatus>",
          "<RequestId><![CDATA[<a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a>"
          "<a><a><a><a><a><a><a><a><a><a><a><a><a>]]></RequestId>\n<CertificateStatus>");
  replace("<CertificateArn>", "<Empty/><Empty a=\"/>\" />\n<CertificateArn>");
  check_two_tokens(v::parse_certificate_details(xml, prefix));
}

namespace {

// The element depth of the tree Boost.PropertyTree builds (attributes are not elements).
std::size_t tree_depth(const boost::property_tree::ptree& node) {
  std::size_t deepest = 0;
  for (const auto& child : node) {
    if (!child.first.starts_with("<xml")) {
      deepest = std::max(deepest, 1 + tree_depth(child.second));
    }
  }
  return deepest;
}

// The parser's own depth for `xml`: what xml_too_deep must never under-count.
std::optional<std::size_t> parsed_depth(const std::string& xml) {
  boost::property_tree::ptree doc;
  try {
    std::istringstream in(xml);
    boost::property_tree::read_xml(in, doc, boost::property_tree::xml_parser::no_comments);
  } catch (const boost::property_tree::xml_parser_error&) {
    return std::nullopt;
  }
  return tree_depth(doc);
}

std::string repeat(std::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    out += s;
  }
  return out;
}

}  // namespace

TEST_CASE("the XML depth scan counts what the parser nests, and no less") {
  struct row {
    std::string_view name;
    std::string xml;
    std::size_t depth;  // the deepest element level of the parsed tree
  };
  const row rows[] = {
      {"one element", "<a/>", 1},
      {"self-closing is a level", "<a><b/></a>", 2},
      {"siblings are not nesting", "<a>" + repeat("<b/><c>x</c>", 1000) + "</a>", 2},
      {"a comment is skipped", "<a><!-- <b><c><d> </a> --></a>", 1},
      {"CDATA is skipped", "<a><![CDATA[<b><c></a>]]></a>", 1},
      {"declaration and processing instructions",
       "<?xml version=\"1.0\"?><?pi <b><c> ?><a><?x </a>?></a>", 1},
      {"'>' and '/' in attribute values", "<a x=\"/>\" y='>'><b z=\"</a>\"/></a>", 2},
      {"'<' in an attribute value", "<a x=\"<b><c>\"><b/></a>", 2},
      {"a DOCTYPE whose brackets hold '>'", "<!DOCTYPE a [ <!ELEMENT a ANY> ]><a><b/></a>", 2},
      {"entities in text", "<a>&lt;b&gt;&#60;c&#x3e;<b/></a>", 2},
      // RapidXML reads a quote in an attribute name as part of the name: the value is the
      // apostrophe's. A scanner that toggled on every quote would skip the <b>s.
      {"a quote in an attribute name",
       "<a b\"c='d'>" + repeat("<b>", 40) + "\"" + repeat("</b>", 40) + "</a>", 41},
      {"a quote in an element name",
       "<a\">" + repeat("<b>", 40) + "\"" + repeat("</b>", 40) + "</a\">", 41},
      // Only <!DOCTYPE counts brackets; any other <! ends at the first '>'.
      {"an unknown declaration with a bracket",
       "<a><!x[>" + repeat("<b>", 40) + repeat("</b>", 40) + "]></a>", 41},
      {"'<!-' without a second dash is not a comment",
       "<a><!-x>" + repeat("<b>", 40) + "-->" + repeat("</b>", 40) + "</a>", 41},
      // The other way round: counting what the parser skips would refuse good input.
      {"'<?' ends at the first '?>' after it", "<a><?>" + repeat("<b>", 40) + "?></a>", 1},
  };
  for (const row& r : rows) {
    CAPTURE(r.name);
    const auto parsed = parsed_depth(r.xml);
    REQUIRE(parsed.has_value());
    CHECK(*parsed == r.depth);
    CHECK_FALSE(v::xml_too_deep(r.xml, r.depth).has_value());
    CHECK(v::xml_too_deep(r.xml, r.depth - 1).has_value());
  }
  SUBCASE("the offset is that of the first element too deep") {
    CHECK(v::xml_too_deep("<a><b/></a>", 1) == std::optional<std::size_t>(3));
    CHECK(v::xml_too_deep("<a><b/><c><d/></c></a>", 2) == std::optional<std::size_t>(10));
    CHECK(v::xml_too_deep("\xEF\xBB\xBF<a><b/></a>", 1) == std::optional<std::size_t>(6));
  }
  SUBCASE("the scan stops where the parser would (broken XML; the parser says why)") {
    for (std::string_view broken : {"<a x>", "<a><!-- ", "<a><![CDATA[", "<a><?x", "<a x=1>",
                                    "<a x='1>", "<a/ >", "< a>", "x<a>", "</a>", "<a></a >junk"}) {
      CAPTURE(broken);
      CHECK_FALSE(v::xml_too_deep(std::string(broken) + repeat("<b>", 40), 32).has_value());
      CHECK_FALSE(parsed_depth(std::string(broken) + repeat("<b>", 40)).has_value());
    }
    // A NUL byte ends the parser's input, and the scan's.
    const std::string nul = std::string("<a/>") + '\0' + repeat("<b>", 40);
    CHECK_FALSE(v::xml_too_deep(nul, 32).has_value());
  }
}

TEST_CASE("a custom prefix is what RedirectFrom is checked against") {
  const auto d = v::parse_certificate_details(details_json, "/acme/");
  CHECK(contains(d.errors, "ValidationTokenDetails[0].RedirectFrom: the path must start with "
                           "/acme/"));
}

TEST_CASE("domains are compared case-insensitively and stored lower-case") {
  const auto d = v::parse_certificate_details(
      json_with("issued", "self-hosted",
                {entry("WWW.Example.COM",
                       "http://www.EXAMPLE.com/.well-known/pki-validation/4d5e6f.txt", www_to)}),
      prefix);
  CHECK(d.errors.empty());
  REQUIRE(d.tokens.size() == 1);
  CHECK(d.tokens[0].domain == "www.example.com");
}

TEST_CASE("skipped entries and status hints are warnings, not errors") {
  SUBCASE("a wildcard domain is skipped: HTTP validation does not support wildcards") {
    const auto d =
        v::parse_certificate_details(json_with("pending-validation", "self-hosted",
                                               {apex, R"({"Domain": "*.example.com"})", www}),
                                     prefix);
    CHECK(d.errors.empty());
    CHECK(d.tokens.size() == 2);
    REQUIRE(d.warnings.size() == 1);
    CHECK(d.warnings[0] == "ValidationTokenDetails[1]: skipped \"*.example.com\": HTTP "
                           "validation does not support wildcards (ACM validates them by DNS)");
  }
  SUBCASE("an entry without RedirectFrom or RedirectTo is skipped") {
    const auto d = v::parse_certificate_details(
        json_with("pending-validation", "self-hosted",
                  {apex, R"({"Domain": "www.example.com", "RedirectFrom": null})"}),
        prefix);
    CHECK(d.errors.empty());
    CHECK(d.tokens.size() == 1);
    CHECK(contains(d.warnings,
                   "ValidationTokenDetails[1]: skipped www.example.com: no RedirectFrom and "
                   "RedirectTo"));
  }
  SUBCASE("an identical duplicate is skipped") {
    const auto d = v::parse_certificate_details(
        json_with("pending-validation", "self-hosted", {apex, apex}), prefix);
    CHECK(d.errors.empty());
    CHECK(d.tokens.size() == 1);
    CHECK(contains(d.warnings, "ValidationTokenDetails[1]: skipped a duplicate"));
  }
  SUBCASE("tokens served by CloudFront itself") {
    const auto d =
        v::parse_certificate_details(json_with("pending-validation", "cloudfront", {apex}), prefix);
    CHECK(d.errors.empty());
    CHECK(d.tokens.size() == 1);
    CHECK(contains(d.warnings, "the tenant's tokens are served by CloudFront itself: this proxy "
                               "is not needed once DNS points to CloudFront"));
  }
  SUBCASE("only wildcards: nothing left is an error") {
    const auto d = v::parse_certificate_details(
        json_with("pending-validation", "self-hosted", {R"({"Domain": "*.example.com"})"}), prefix);
    CHECK(d.tokens.empty());
    CHECK(contains(d.warnings, "wildcards"));
    CHECK(contains(d.errors, "no importable token among the 1 entry given"));
  }
}

TEST_CASE("statuses other than pending-validation and issued are warnings") {
  struct row {
    std::string_view status;
    std::string_view warning;  // empty: none
  };
  const row rows[] = {
      {"pending-validation", ""},
      {"issued", ""},
      {"inactive", "certificate status is inactive, not pending-validation or issued"},
      {"expired", "certificate status is expired"},
      {"validation-timed-out", "certificate status is validation-timed-out"},
      {"revoked", "certificate status is revoked"},
      {"failed", "certificate status is failed"},
      {"frozen", "unknown certificate status \"frozen\""},
  };
  for (const row& r : rows) {
    CAPTURE(r.status);
    const auto d = v::parse_certificate_details(json_with(r.status, "self-hosted", {apex}), prefix);
    CHECK(d.errors.empty());
    CHECK(d.tokens.size() == 1);
    if (r.warning.empty()) {
      CHECK(d.warnings.empty());
    } else {
      REQUIRE(d.warnings.size() == 1);
      CHECK(d.warnings[0].starts_with(r.warning));
    }
  }
}

TEST_CASE("the YAML output is ready to paste into a config") {
  const auto d = v::parse_certificate_details(details_json, prefix);
  const std::string yaml = v::render_tokens_yaml(d);
  CHECK(yaml == "# from get-managed-certificate-details: status pending-validation, 2 tokens\n"
                "domains: [example.com, www.example.com]\n" +
                    token_lines);
  SUBCASE("and it loads as the tokens of a config") {
    CHECK(load_errors(std::string(head) + yaml) == "");
  }
  SUBCASE("one token, repeated domains listed once, \"$\" escaped from ${VAR} substitution") {
    v::certificate_details one;
    one.status = "issued";
    one.tokens = {{"example.com", std::string(apex_from), "https://acm.example/a$b?x=\"1\"", {}},
                  {"example.com",
                   "http://example.com/.well-known/pki-validation/z.txt",
                   std::string(apex_to),
                   {}}};
    CHECK(v::render_tokens_yaml(one).starts_with(
        "# from get-managed-certificate-details: status issued, 2 tokens\n"
        "domains: [example.com]\n"
        "tokens:\n"
        "  - domain: example.com\n"
        "    redirect_from: \"http://example.com/.well-known/pki-validation/1a2b3c.txt\"\n"
        "    redirect_to: \"https://acm.example/a$$b?x=\\\"1\\\"\"\n"));
    one.tokens.pop_back();
    CHECK(v::render_tokens_yaml(one).starts_with(
        "# from get-managed-certificate-details: status issued, 1 token\n"));
  }
}

TEST_CASE("rewriting a config without tokens appends a block and adds missing domains") {
  const std::string before = std::string(head) + "domains: [example.com]   # tenant\n";
  const auto r = v::rewrite_config(before, two_tokens, no_env);
  CHECK_FALSE(r.replaced);
  CHECK(r.warnings.empty());
  CHECK(r.added_domains == std::vector<std::string>{"www.example.com"});
  CHECK(r.text == std::string(head) +
                      "domains: [example.com, www.example.com]   # tenant\n"
                      "\n"
                      "# ACM HTTP validation tokens, from get-managed-certificate-details "
                      "(wkproxy tokens import)\n" +
                      token_lines);
  CHECK(load_errors(r.text) == "");

  SUBCASE("a file without a final line break gets one first") {
    const auto r2 = v::rewrite_config(before.substr(0, before.size() - 1), two_tokens, no_env);
    CHECK(r2.text == r.text);
  }
}

TEST_CASE("rewriting a config replaces its tokens block and keeps everything else") {
  const std::string before =
      std::string(head) +
      "# tenant domains\n"
      "domains: [example.com, www.example.com]\n"
      "\n"
      "# imported last month\n"
      "tokens:  # from AWS\n"
      "  # old token\n"
      "  - domain: example.com\n"
      "    redirect_from: http://example.com/.well-known/pki-validation/old.txt\n"
      "    redirect_to: https://validation.us-east-1.acm-validations.aws/1/x\n"
      "\n"
      "# timeouts follow\n"
      "timeouts:\n"
      "  connect: 2s   # short\n";
  const auto r = v::rewrite_config(before, two_tokens, no_env);
  CHECK(r.replaced);
  CHECK(r.added_domains.empty());
  CHECK(r.warnings.empty());
  CHECK(r.text == std::string(head) +
                      "# tenant domains\n"
                      "domains: [example.com, www.example.com]\n"
                      "\n"
                      "# imported last month\n"
                      "tokens:  # from AWS\n" +
                      token_lines.substr(std::string_view("tokens:\n").size()) +
                      "\n"
                      "# timeouts follow\n"
                      "timeouts:\n"
                      "  connect: 2s   # short\n");
  CHECK(load_errors(r.text) == "");

  SUBCASE("a second import of the same tokens changes nothing") {
    CHECK(v::rewrite_config(r.text, two_tokens, no_env).text == r.text);
  }
  SUBCASE("a block in compact style (items at column 0) at the end of the file") {
    const std::string compact =
        std::string(head) + "domains: [example.com, www.example.com]\n"
                            "tokens:\n"
                            "- domain: example.com\n"
                            "  redirect_from: http://example.com/.well-known/pki-validation/o.txt\n"
                            "  redirect_to: https://validation.us-east-1.acm-validations.aws/1/x";
    const auto c = v::rewrite_config(compact, two_tokens, no_env);
    CHECK(c.text == std::string(head) + "domains: [example.com, www.example.com]\n" + token_lines);
  }
  SUBCASE("an empty flow list") {
    const auto c = v::rewrite_config(std::string(head) + "domains: [example.com, www.example.com]\n"
                                                         "tokens: []\n"
                                                         "workers: 2\n",
                                     two_tokens, no_env);
    CHECK(c.text == std::string(head) + "domains: [example.com, www.example.com]\n" + token_lines +
                        "workers: 2\n");
  }
}

TEST_CASE("missing domains are added in the allow-list's own style") {
  struct row {
    std::string_view name;
    std::string before;  // after `head`
    std::string after;   // after `head`, before the appended tokens block
    std::vector<std::string> added;
  };
  const row rows[] = {
      {"flow list with quotes",
       "domains: [\"example.com\"]\n",
       "domains: [\"example.com\", www.example.com]\n",
       {"www.example.com"}},
      {"empty flow list",
       "domains: []\n",
       "domains: [example.com, www.example.com]\n",
       {"example.com", "www.example.com"}},
      {"flow list with a trailing comma",
       "domains: [example.com,]\n",
       "domains: [example.com, www.example.com]\n",
       {"www.example.com"}},
      {"block list",
       "domains:\n  - example.com   # apex\n\nworkers: 2\n",
       "domains:\n  - example.com   # apex\n  - www.example.com\n\nworkers: 2\n",
       {"www.example.com"}},
      {"block list at column 0",
       "domains:\n- other.example\n",
       "domains:\n- other.example\n- example.com\n- www.example.com\n",
       {"example.com", "www.example.com"}},
      {"validation.domains, flow",
       "validation:\n  mode: redirect\n  domains: [example.com]  # tenant\n",
       "validation:\n  mode: redirect\n  domains: [example.com, www.example.com]  # tenant\n",
       {"www.example.com"}},
      {"validation.domains, block",
       "validation:\n  domains:\n    - 'example.com'\n  mode: redirect\n",
       "validation:\n  domains:\n    - 'example.com'\n    - www.example.com\n  mode: redirect\n",
       {"www.example.com"}},
      {"a wildcard already allows www",
       "domains: [example.com, \"*.example.com\"]\n",
       "domains: [example.com, \"*.example.com\"]\n",
       {}},
      {"upper-case entries count",
       "domains: [EXAMPLE.com, WWW.example.COM]\n",
       "domains: [EXAMPLE.com, WWW.example.COM]\n",
       {}},
      {"${VAR} entries count once substituted",
       "domains: [\"${APEX:-example.com}\"]\n",
       "domains: [\"${APEX:-example.com}\", www.example.com]\n",
       {"www.example.com"}},
  };
  for (const row& r : rows) {
    CAPTURE(r.name);
    const auto out = v::rewrite_config(std::string(head) + r.before, two_tokens, no_env);
    CHECK(out.warnings.empty());
    CHECK(out.added_domains == r.added);
    const std::string expected = std::string(head) + r.after +
                                 "\n# ACM HTTP validation tokens, from "
                                 "get-managed-certificate-details (wkproxy tokens import)\n" +
                                 token_lines;
    CHECK(out.text == expected);
    CHECK(load_errors(out.text) == "");
  }
}

TEST_CASE("an allow-list that cannot be edited safely is left alone with a warning") {
  struct row {
    std::string_view name;
    std::string before;
  };
  const row rows[] = {
      {"multi-line flow list", "domains: [example.com,\n  other.example]\n"},
      {"anchored list", "domains: &tenants [example.com]\n"},
      {"flow mapping", "validation: {domains: [example.com]}\n"},
      {"no allow-list", "workers: 2\n"},
  };
  for (const row& r : rows) {
    CAPTURE(r.name);
    const auto out = v::rewrite_config(std::string(head) + r.before, two_tokens, no_env);
    CHECK(out.added_domains.empty());
    REQUIRE(out.warnings.size() == 1);
    CHECK(out.warnings[0].ends_with(": add example.com, www.example.com to domains by hand"));
    CHECK(out.text.starts_with(std::string(head) + r.before));
  }
}

TEST_CASE("CRLF configs keep CRLF line breaks") {
  const std::string before =
      "version: 1\r\nlisten: [\"127.0.0.1:8080\"]\r\norigin: http://127.0.0.1:8081\r\n"
      "cloudfront: http://d111111abcdef8.cloudfront.net\r\ndomains:\r\n  - example.com\r\n";
  const auto out = v::rewrite_config(before, two_tokens, no_env);
  CHECK(out.added_domains == std::vector<std::string>{"www.example.com"});
  CHECK(out.text.find("  - www.example.com\r\n") != std::string::npos);
  CHECK(out.text.find("\r\ntokens:\r\n  - domain: example.com\r\n") != std::string::npos);
  std::size_t bare = 0;
  for (std::size_t i = 0; i < out.text.size(); ++i) {
    if (out.text[i] == '\n' && (i == 0 || out.text[i - 1] != '\r')) {
      ++bare;
    }
  }
  CHECK(bare == 0);
}
