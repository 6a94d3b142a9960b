#include "session/finish.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <string>

namespace wk::session {

using core::failure;

observe::upstream_label label_of(const wk::runtime::snapshot& rt, const upstream::target* t) {
  if (t == &rt.origin) {
    return observe::upstream_label::origin;
  }
  if (t == &rt.cloudfront) {
    return observe::upstream_label::cloudfront;
  }
  return observe::upstream_label::acm;
}

void count_upstream_failure(context* w, observe::upstream_label u, failure f) {
  using E = observe::upstream_error;
  E e{};
  switch (f) {
  case failure::upstream_unresolved:
    e = E::unresolved;
    break;
  case failure::upstream_refused:
    e = E::refused;
    break;
  case failure::upstream_connect_timeout:
    e = E::connect_timeout;
    break;
  case failure::upstream_tls:
    e = E::tls;
    break;
  case failure::upstream_reset:
    e = E::reset;
    break;
  case failure::upstream_bad_response:
    e = E::bad_response;
    break;
  case failure::upstream_timeout:
    e = E::timeout;
    break;
  default:
    return;
  }
  w->metrics.upstream_failures[static_cast<std::size_t>(u)][static_cast<std::size_t>(e)].add();
}

namespace {

// The domain label of validation metrics: a configured name or token domain, else "other" (a
// "*" allow-list must not turn every Host on the Internet into a time series).
// The metrics label of a validation request's host: a listed name or a token domain as
// itself, anything else "other" (bounded cardinality whatever the Host headers say).
std::string_view validation_label(const wk::runtime::snapshot& rt, std::string_view host) {
  return rt.routes.domains.lists(host) || rt.tokens.has_tokens(host) ? host
                                                                     : std::string_view("other");
}

}  // namespace

void write_access_log(context& w, const request_state& st, const fault& f,
                      const client_info& conn) {
  observe::access_record r;
  r.time = st.wall;
  r.client = conn.peer;
  r.host = st.decision.host;
  r.method = st.method;
  r.target = st.target;
  r.version = st.version;
  r.referer = st.referer;
  r.user_agent = st.user_agent;
  switch (st.decision.kind) {
  case routing::route_kind::origin:
    r.route = "origin";
    break;
  case routing::route_kind::validation:
    r.route = "validation";
    break;
  case routing::route_kind::reject:
    r.route = "reject";
    break;
  }
  r.upstream = st.upstream ? std::string_view(st.upstream->cfg.name) : std::string_view();
  r.status = st.status;
  r.bytes_in = st.bytes_in;
  r.bytes_out = st.bytes_out;
  r.duration_ms = std::chrono::duration<double, std::milli>(steady::now() - st.start).count();
  r.error = core::name_of(f.error);
  r.early_answer = st.early_answer;
  if (f) {
    w.report.counters->count_failure(static_cast<std::size_t>(f.error));
  }
  w.log.write(r);
  if (w.runtime->activity) {
    w.runtime->activity->touch(st.decision.host, st.wall);
  }
  w.metrics.record_request(conn.listener_index, static_cast<observe::route_label>(st.decision.kind),
                           st.status, steady::now() - st.start, st.bytes_in, st.bytes_out);
  if (st.validation_hit) {
    validation::event_view e;
    e.time = st.wall;
    e.client = conn.peer;
    e.user_agent = st.user_agent;
    e.domain = st.decision.host;
    e.file = st.decision.token;
    e.mode = validation::name_of(st.vmode);
    e.action = validation::name_of(st.vaction);
    e.status = st.status;
    if (st.upstream != nullptr) {
      e.upstream = st.vaction == validation::action_kind::fetch ? st.upstream->cfg.host
                                                                : st.upstream->cfg.name;
    }
    e.location = st.location;
    e.latency_ms = r.duration_ms;
    e.error = r.error;
    char code[8];
    const auto code_end = std::to_chars(code, code + sizeof code, e.status).ptr;
    w.metrics.validation_requests.add(
        {validation_label(*w.runtime, e.domain), e.action, std::string_view(code, code_end)});
    w.report.events->record(e);
  }
}

}  // namespace wk::session
