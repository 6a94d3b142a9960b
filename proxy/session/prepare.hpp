#pragma once
// Phase 2: preparing the upstream request. The routing decision (normalize + route), the
// request-body limit, the validation plan (which may answer locally or pick a fetch upstream),
// the upstream target, and the request head the backend receives (header rules).

#include "runtime/runtime.hpp"
#include "session/context.hpp"
#include "session/request_state.hpp"
#include "validation/plan.hpp"

#include <string>

namespace wk::session {

struct prepared {
  bool answer_locally = false;  // a validation request answered here (`act`): no backend
  validation::action act;
  bool expect_continue = false;  // the client waits for 100 Continue before sending its body
  std::string head;              // the request head for the backend
};

// Routes the request whose head `parser` holds and prepares what goes upstream. Fills st's
// decision, upstream and validation fields.
fault prepare(const wk::runtime::snapshot& rt, const request_parser& parser,
              const client_info& conn, request_state& st, prepared& out);

}  // namespace wk::session
