#pragma once
// Everything known about one request, filled in as it moves through the phases, and what a
// phase returns when it goes wrong (a `fault`). Only finish.hpp turns a fault into an error
// reply and the access-log line.

#include "core/failure.hpp"
#include "observe/metrics.hpp"
#include "routing/route.hpp"
#include "upstream/target.hpp"
#include "validation/plan.hpp"

#include "http/request_reader.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wk::session {

using steady = std::chrono::steady_clock;
using request_parser = http::request_reader;

// What went wrong in a phase (failure::none: nothing).
struct fault {
  fault() = default;
  explicit fault(core::failure e, std::string why = {}, bool retry = false)
      : error(e), detail(std::move(why)), retryable(retry) {}

  core::failure error = core::failure::none;
  std::string detail;
  bool retryable = false;  // failed on a reused upstream connection before any exchange

  explicit operator bool() const noexcept { return error != core::failure::none; }
};

struct request_state {
  steady::time_point start = steady::now();
  std::chrono::system_clock::time_point wall = std::chrono::system_clock::now();
  std::string method;
  std::string target;
  routing::decision decision;
  // Where relay_response builds the head of the answer for the client (a string of the
  // worker's, see context::take_string: its capacity is reused from request to request).
  std::string response_head;
  const upstream::target* upstream = nullptr;
  unsigned status = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  bool head_read = false;  // a whole request head arrived (else a failure is not logged)
  bool http11 = true;
  bool head = false;
  bool client_keep_alive = false;
  bool local_answer = false;       // answered here (validation): keep-alive decided then
  bool response_started = false;   // bytes of a response reached the client
  bool request_sent = false;       // the whole request reached the backend
  bool request_head_sent = false;  // the whole request head reached the backend
  // The backend answered before it had the whole body (an early answer, relay.hpp): "drained"
  // (the rest of the body was read and discarded, the connection stays open) or "closed".
  std::string_view early_answer;
  bool request_body_done = false;     // a body of known length was relayed without the parser
  std::size_t prefetched = 0;         // body bytes parsed into the body buffer before connecting
  bool body_read_live = false;        // body bytes were read while streaming (no resend possible)
  const bool* stopping = nullptr;     // the worker is stopping: the answer closes the connection
  observe::gauge* tunnels = nullptr;  // the worker's count of open tunnels
  bool upstream_reusable = false;     // the backend connection can go back to the pool
  bool upgrade_requested = false;     // origin route, Upgrade + Connection: upgrade forwarded
  bool tunnel = false;                // the backend answered 101: bytes flow both ways now
  // A chunked request on the origin route: its trailer fields that may be passed on are.
  bool relay_trailers = false;
  // The validation route (before the action may have passed the request to the origin).
  bool validation_hit = false;
  validation::action_kind vaction = validation::action_kind::forward;
  config::validation_mode vmode = config::validation_mode::forward;
  // Fields of the request head, for the log. They point into the request's storage, which
  // handle_request keeps until after the access-log line.
  std::string_view user_agent;
  std::string_view referer;
  unsigned version = 0;       // 10 or 11 once the head is parsed
  std::string_view location;  // redirect: the Location sent (points into the config snapshot)
};

}  // namespace wk::session
