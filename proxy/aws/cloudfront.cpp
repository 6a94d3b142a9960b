#include "aws/cloudfront.hpp"

#include "aws/xml.hpp"
#include "core/ascii.hpp"

#include <boost/property_tree/ptree.hpp>

namespace wk::aws {

namespace pt = boost::property_tree;

bool api_error::retryable() const {
  return http_status == 0 || http_status >= 500 || http_status == 429 || code == "Throttling" ||
         code == "ThrottlingException" || code == "RequestLimitExceeded" ||
         code == "TooManyRequestsException";
}

std::string api_error::text() const {
  if (http_status == 0) {
    return message;
  }
  std::string out = code.empty() ? "HTTP " + std::to_string(http_status)
                                 : code + " (HTTP " + std::to_string(http_status) + ")";
  if (!message.empty()) {
    out += ": " + message;
  }
  return out;
}

api_error error_of(const http_response& r) {
  api_error e;
  e.http_status = r.status;
  std::vector<std::string> ignored;
  if (const auto doc = parse_xml(r.body, "an AWS error", ignored)) {
    if (const auto err = as_error(root_of(*doc))) {
      e.code = err->code;
      e.message = err->message;
    }
  }
  if (e.code.empty()) {
    // Some front ends answer throttling without a body, or with the code in a header.
    e.code = r.header("x-amzn-ErrorType");
    e.code = e.code.substr(0, e.code.find(':'));
  }
  return e;
}

namespace {

constexpr std::string_view api_version = "/2020-05-31/";

request make(const endpoint& cf, std::string method, const std::string& path) {
  request r;
  r.method = std::move(method);
  r.path = cf.path + std::string(api_version) + path;
  r.headers.emplace_back("Host", cf.host_header());
  return r;
}

// "&amp;" etc. for text in an XML element.
std::string xml_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
    case '&':
      out += "&amp;";
      break;
    case '<':
      out += "&lt;";
      break;
    case '>':
      out += "&gt;";
      break;
    default:
      out += c;
    }
  }
  return out;
}

// The root element `name` of `xml`, or the reason.
std::variant<root_element, std::string> root_named(const std::optional<pt::ptree>& doc,
                                                   std::string_view name,
                                                   const std::vector<std::string>& errors) {
  if (!doc) {
    return errors.empty() ? std::string("not XML") : errors.front();
  }
  root_element root = root_of(*doc);
  if (root.node == nullptr) {
    return std::string("no XML element");
  }
  if (root.name != name) {
    return "root element <" + root.name + ">, expected <" + std::string(name) + ">";
  }
  return root;
}

std::string text_or_empty(const pt::ptree& parent, std::string_view name,
                          std::vector<std::string>& errors, std::string_view root) {
  return xml_text(parent, name, "", errors, root).value_or("");
}

}  // namespace

request get_managed_certificate_details(const endpoint& cf, std::string_view identifier) {
  return make(cf, "GET", "managed-certificate/" + uri_encode(identifier, false));
}

request get_distribution_tenant(const endpoint& cf, std::string_view identifier) {
  return make(cf, "GET", "distribution-tenant/" + uri_encode(identifier, false));
}

request get_connection_group(const endpoint& cf, std::string_view identifier) {
  return make(cf, "GET", "connection-group/" + uri_encode(identifier, false));
}

request verify_dns_configuration(const endpoint& cf, std::string_view identifier) {
  request r = make(cf, "POST", "verify-dns-configuration");
  r.headers.emplace_back("Content-Type", "application/xml");
  r.payload = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<VerifyDnsConfigurationRequest "
              "xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\"><Identifier>" +
              xml_escape(identifier) + "</Identifier></VerifyDnsConfigurationRequest>";
  return r;
}

std::variant<distribution_tenant, std::string> parse_distribution_tenant(std::string_view xml) {
  constexpr std::string_view root_name = "DistributionTenant";
  std::vector<std::string> errors;
  const auto doc = parse_xml(xml, "a distribution tenant nests 4 deep", errors);
  auto root = root_named(doc, root_name, errors);
  if (auto* reason = std::get_if<std::string>(&root)) {
    return *reason;
  }
  const pt::ptree& n = *std::get<root_element>(root).node;
  distribution_tenant out;
  out.id = text_or_empty(n, "Id", errors, root_name);
  out.name = text_or_empty(n, "Name", errors, root_name);
  out.arn = text_or_empty(n, "Arn", errors, root_name);
  out.distribution_id = text_or_empty(n, "DistributionId", errors, root_name);
  out.connection_group_id = text_or_empty(n, "ConnectionGroupId", errors, root_name);
  out.status = text_or_empty(n, "Status", errors, root_name);
  out.enabled = text_or_empty(n, "Enabled", errors, root_name) != "false";
  if (const pt::ptree* list = xml_child(n, "Domains", "", errors, root_name)) {
    std::size_t i = 0;
    for (const auto& child : *list) {
      if (!is_element(child)) {
        continue;
      }
      const std::string path = "Domains[" + std::to_string(i++) + "]";
      tenant_domain d;
      d.domain =
          core::to_lower(xml_text(child.second, "Domain", path, errors, root_name).value_or(""));
      d.status = xml_text(child.second, "Status", path, errors, root_name).value_or("");
      if (d.domain.empty()) {
        errors.push_back(path + ": no Domain");
        continue;
      }
      out.domains.push_back(std::move(d));
    }
  }
  if (!errors.empty()) {
    return errors.front();
  }
  return out;
}

std::variant<connection_group, std::string> parse_connection_group(std::string_view xml) {
  constexpr std::string_view root_name = "ConnectionGroup";
  std::vector<std::string> errors;
  const auto doc = parse_xml(xml, "a connection group nests 4 deep", errors);
  auto root = root_named(doc, root_name, errors);
  if (auto* reason = std::get_if<std::string>(&root)) {
    return *reason;
  }
  const pt::ptree& n = *std::get<root_element>(root).node;
  connection_group out;
  out.id = text_or_empty(n, "Id", errors, root_name);
  out.name = text_or_empty(n, "Name", errors, root_name);
  out.routing_endpoint = core::to_lower(text_or_empty(n, "RoutingEndpoint", errors, root_name));
  out.status = text_or_empty(n, "Status", errors, root_name);
  out.is_default = text_or_empty(n, "IsDefault", errors, root_name) == "true";
  if (!errors.empty()) {
    return errors.front();
  }
  if (out.routing_endpoint.empty()) {
    return std::string("ConnectionGroup: no RoutingEndpoint");
  }
  return out;
}

std::variant<std::vector<dns_configuration>, std::string>
parse_dns_configuration(std::string_view xml) {
  constexpr std::string_view root_name = "VerifyDnsConfigurationResult";
  std::vector<std::string> errors;
  const auto doc = parse_xml(xml, "a DNS configuration nests 4 deep", errors);
  auto root = root_named(doc, root_name, errors);
  if (auto* reason = std::get_if<std::string>(&root)) {
    return *reason;
  }
  const pt::ptree& n = *std::get<root_element>(root).node;
  std::vector<dns_configuration> out;
  if (const pt::ptree* list = xml_child(n, "DnsConfigurationList", "", errors, root_name)) {
    std::size_t i = 0;
    for (const auto& child : *list) {
      if (!is_element(child)) {
        continue;
      }
      const std::string path = "DnsConfigurationList[" + std::to_string(i++) + "]";
      dns_configuration d;
      d.domain =
          core::to_lower(xml_text(child.second, "Domain", path, errors, root_name).value_or(""));
      d.status = xml_text(child.second, "Status", path, errors, root_name).value_or("");
      d.reason = xml_text(child.second, "Reason", path, errors, root_name).value_or("");
      if (d.domain.empty() || d.status.empty()) {
        errors.push_back(path + ": no Domain or Status");
        continue;
      }
      out.push_back(std::move(d));
    }
  }
  if (!errors.empty()) {
    return errors.front();
  }
  return out;
}

}  // namespace wk::aws
