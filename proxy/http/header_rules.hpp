#pragma once
// Header rules applied on each hop. Pure functions over field containers (Beast's, or the
// request and response readers'): no I/O.
// Framing (Content-Length / Transfer-Encoding) is never copied: the session chooses it.

#include "config/config.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/fields.hpp>

#include <cstring>
#include <string>
#include <string_view>

namespace wk::http {

struct forward_options {
  bool validation_route = false;  // forward only the small allow-list of headers a CA sends
  config::forwarded_policy x_forwarded_for = config::forwarded_policy::append;
  config::forwarded_policy x_forwarded_proto = config::forwarded_policy::append;
  std::string_view client_ip;     // added to X-Forwarded-For
  std::string_view proto;         // "http" or "https", for X-Forwarded-Proto
  std::string_view authority;     // non-empty: replaces Host (absolute-form target)
  std::string_view default_host;  // used when the client sent no Host (HTTP/1.0)
  std::string_view upgrade;       // non-empty: forward "Upgrade: <this>" and "Connection: upgrade"
};

// Appends header fields as the bytes of a head being written ("Name: value\r\n"), with the
// same calls as a Beast field container. The request and response heads are written this way
// on the hot path: no field node is allocated, and `out` keeps its capacity between requests.
class head_writer {
public:
  explicit head_writer(std::string& out) : out_(&out) {}
  void insert(boost::beast::http::field f, std::string_view value) {
    insert(boost::beast::http::to_string(f), value);
  }
  void insert(boost::beast::http::field /*f*/, std::string_view name, std::string_view value) {
    insert(name, value);
  }
  void insert(std::string_view name, std::string_view value) {
    // One resize and two copies instead of four appends (each append checks the capacity and
    // the length again: about 1,000 instructions per proxied request, measured with
    // bench/instructions).
    const auto at = out_->size();
    out_->resize(at + name.size() + value.size() + 4);
    char* p = out_->data() + at;
    std::memcpy(p, name.data(), name.size());
    p += name.size();
    *p++ = ':';
    *p++ = ' ';
    if (!value.empty()) {
      std::memcpy(p, value.data(), value.size());
      p += value.size();
    }
    p[0] = '\r';
    p[1] = '\n';
  }

private:
  std::string* out_;
};

// True for the hop-by-hop fields of RFC 9110 section 7.6.1 and the framing fields the proxy
// recomputes (Content-Length, Transfer-Encoding, Trailer), plus Expect (the proxy answers
// 100-continue itself) and Proxy-Connection.
bool is_hop_by_hop(std::string_view name);

// The same by the field's code (what the hot path uses): every name above is a field Beast
// knows, so an unknown field never is one.
bool is_hop_by_hop(boost::beast::http::field f);

// Trailer fields (RFC 9110 section 6.5) the proxy passes on, in a chunked message of either
// direction: any field but those that must not appear in, or cannot be acted on from, a trailer
// section (6.5.1): framing and hop-by-hop fields, routing (Host), authentication and cookies,
// request modifiers (Cache-Control, Pragma, Max-Forwards, Range, the conditionals), response
// control (Age, Date, Expires, Location, Retry-After, Vary), content format (Content-Type,
// -Encoding, -Range, -Location, -Language), the fields the proxy writes itself (Forwarded, Via,
// X-Forwarded-*, X-Real-IP) and any field the message's Connection field names.
// `connection`: the value of the message's Connection field ("" when none).
bool trailer_allowed(boost::beast::http::field f, std::string_view name,
                     std::string_view connection);

// At most this many bytes of trailer fields are passed on per message; the rest are dropped.
inline constexpr std::size_t trailer_bytes_limit = 8 * 1024;

// Appends `name: value\r\n` to `out` when the field is allowed as a trailer and `out` stays
// within trailer_bytes_limit. Returns whether it was appended.
bool append_trailer(std::string& out, boost::beast::http::field f, std::string_view name,
                    std::string_view value, std::string_view connection);

// Fills `out` with the fields of the client's request `in` that go to a backend:
// end-to-end fields in order, minus hop-by-hop ones and those named in Connection;
// Host (possibly replaced); X-Forwarded-For/-Proto by policy; Upgrade + Connection: upgrade
// when opt.upgrade is set (the one hop-by-hop exchange a proxy passes on, RFC 9110 7.8). On the
// validation route only Host, User-Agent, Accept, Accept-Encoding, Accept-Language, If-None-Match,
// If-Modified-Since, Cache-Control and the X-Forwarded-* fields are kept (never Cookie or
// Authorization: CloudFront must not see the customer's credentials).
// `In` is boost::beast::http::fields or request_reader (a client's request); `Out` is
// boost::beast::http::fields or head_writer.
template <class In, class Out>
void build_upstream_request_fields(const In& in, Out& out, const forward_options& opt);

// Fills `out` with the fields of a backend response that go to the client: everything but
// hop-by-hop fields and those named in Connection. For a 101 answer to an upgrade
// (`switching` true), Upgrade is kept and "Connection: upgrade" added.
// `In` is boost::beast::http::fields or response_reader (a backend's response).
template <class In, class Out>
void build_downstream_response_fields(const In& in, Out& out, bool switching = false);

}  // namespace wk::http
