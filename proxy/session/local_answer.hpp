#pragma once
// A validation request answered here (redirect, static file, 404): no backend involved.

#include "http/local_reply.hpp"
#include "session/request_state.hpp"
#include "session/wire_io.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/stream_traits.hpp>

#include <string>
#include <string_view>

namespace wk::session {

// Sends the answer for `act`; decides keep-alive (st.client_keep_alive) before sending.
template <class Client>
asio::awaitable<fault> answer_locally(Client& client, request_state& st,
                                      const validation::action& act, const config::config& cfg) {
  static const std::string not_found_body = "wkproxy: no such validation token\n";
  std::string_view location;
  std::string_view body;
  switch (act.kind) {
  case validation::action_kind::redirect:
    location = act.token->redirect_to;
    break;
  case validation::action_kind::serve:
    body = *act.body;
    break;
  default:
    body = not_found_body;
    break;
  }
  st.local_answer = true;
  const bool keep = st.client_keep_alive && st.http11 && !*st.stopping;
  auto bytes = http::validation_reply(act.status, location, body, keep, st.head);
  if (bytes.empty()) {
    co_return fault{core::failure::internal, "unsafe Location value"};
  }
  st.client_keep_alive = keep;
  beast::get_lowest_layer(client).expires_after(cfg.timeouts.body_idle);
  st.status = act.status;
  st.location = location;
  st.response_started = true;
  if (auto ec = co_await write_all(client, bytes); ec) {
    co_return fault{core::failure::client_gone};
  }
  st.bytes_out = st.head ? 0 : body.size();
  co_return fault{};
}

}  // namespace wk::session
