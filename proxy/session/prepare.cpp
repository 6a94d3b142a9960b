#include "session/prepare.hpp"

#include "http/upstream_request.hpp"
#include "session/read_request.hpp"

#include <boost/beast/core/string.hpp>

namespace wk::session {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using core::failure;

namespace {

// The fields, target and framing a backend receives (see upstream_request.hpp).
void build_upstream_head(const request_parser& parser, const request_state& st,
                         const client_info& conn, const config::config& cfg, std::string& out) {
  const auto& req = parser;
  http::forward_options opt;
  opt.validation_route = st.decision.kind == routing::route_kind::validation;
  opt.x_forwarded_for = cfg.headers.x_forwarded_for;
  opt.x_forwarded_proto = cfg.headers.x_forwarded_proto;
  opt.client_ip = conn.peer_ip;
  opt.proto = conn.tls ? "https" : "http";
  opt.authority = st.decision.authority;
  opt.default_host = st.upstream->cfg.host;
  if (st.upgrade_requested) {
    opt.upgrade = req[bhttp::field::upgrade];
  }
  http::body_framing framing;
  framing.chunked = parser.chunked();
  if (auto cl = parser.content_length(); cl && !framing.chunked) {
    framing.length = *cl;
  }
  http::build_upstream_request(req, st.decision, opt, framing, out);
}

}  // namespace

fault prepare(const wk::runtime::snapshot& rt, const request_parser& parser,
              const client_info& conn, request_state& st, prepared& out) {
  const auto& cfg = *rt.cfg;
  const auto& req = parser;
  auto facts = http::facts_of(req, !parser.is_done());
  // Routing never waits: one scratch per worker thread serves every request in turn.
  thread_local routing::route_scratch scratch;
  routing::route(rt.routes, facts, st.decision, scratch);
  st.upgrade_requested =
      st.decision.kind == routing::route_kind::origin && st.http11 && http::wants_upgrade(req);
  if (st.decision.kind == routing::route_kind::reject) {
    return fault{st.decision.status == 405 ? failure::method_not_allowed : failure::bad_request,
                 st.decision.reason};
  }
  if (auto f = check_body_limit(parser, cfg.limits); f) {
    return f;
  }
  const upstream::target* fetch = nullptr;
  if (st.decision.kind == routing::route_kind::validation) {
    const auto act =
        validation::plan(rt.tokens, cfg.validation, st.decision.host, st.decision.token);
    st.validation_hit = true;
    st.vaction = act.kind;
    st.vmode = act.mode;
    switch (act.kind) {
    case validation::action_kind::forward:
      break;
    case validation::action_kind::origin:
      // Not one of this domain's tokens: the origin gets the request exactly as sent.
      st.decision.kind = routing::route_kind::origin;
      st.decision.upstream_target = std::move(st.decision.origin_target);
      break;
    case validation::action_kind::fetch:
      fetch = rt.fetch_target(*act.token);
      if (fetch == nullptr) {
        return fault{failure::internal, "no fetch upstream for " + act.token->to_host};
      }
      st.decision.upstream_target = act.token->to_target;
      st.decision.authority = act.token->to_port == 443
                                  ? act.token->to_host
                                  : act.token->to_host + ":" + std::to_string(act.token->to_port);
      break;
    case validation::action_kind::redirect:
    case validation::action_kind::serve:
    case validation::action_kind::not_found:
      out.answer_locally = true;
      out.act = act;
      return fault{};
    }
  }
  if (st.decision.kind == routing::route_kind::validation) {
    st.upstream = fetch != nullptr ? fetch : &rt.cloudfront;
  } else {
    st.upstream = &rt.origin;
  }
  out.expect_continue =
      !parser.is_done() && beast::iequals(req[bhttp::field::expect], "100-continue");
  out.head.reserve(512);
  build_upstream_head(parser, st, conn, cfg, out.head);
  st.relay_trailers = parser.chunked() && st.decision.kind == routing::route_kind::origin;
  return fault{};
}

}  // namespace wk::session
