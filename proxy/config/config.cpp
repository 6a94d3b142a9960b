#include "config/config.hpp"

namespace wk::config {

std::string upstream::key() const {
  std::string out = tls ? "https://" : "http://";
  if (host.find(':') != std::string::npos) {
    out += '[' + host + ']';  // IPv6 literal
  } else {
    out += host;
  }
  out += ':' + std::to_string(port);
  if (tls) {
    // Everything that changes the TLS handshake or its verification is part of the identity.
    out += "|sni=" + sni;
    out += verify ? "|verify=1" : "|verify=0";
    out += "|ca=" + ca_file;
  }
  return out;
}

}  // namespace wk::config
