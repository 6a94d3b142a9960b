#include "app/worker_state.hpp"

#include "session/keepalive.hpp"

namespace wk::app {

namespace {

const session::parked_connection& as_connection(const net::parked& p) {
  return static_cast<const session::parked_connection&>(p);
}

}  // namespace

std::size_t worker_state::parked_count() const {
  return lot ? lot->size() : 0;
}

// Cancelling completes the session's wait later (never inline): the list stays as it is while
// it is walked.
void worker_state::begin_stop() {
  stopping = true;
  for (auto& h : sessions) {
    if (h.idle && h.stream && h.served > 0 &&
        !session::input_pending(h.stream->socket().native_handle())) {
      h.stream->cancel();
    }
  }
  if (lot) {
    lot->close_if([](const net::parked& p) {
      return as_connection(p).served > 0 && !session::input_pending(p.fd());
    });
  }
}

void worker_state::close_idle() {
  for (auto& h : sessions) {
    if (h.idle && h.stream) {
      h.stream->cancel();
    }
  }
  if (lot) {
    lot->close_if([](const net::parked&) { return true; });
  }
}

bool worker_state::make_room(const net::listener_slot* slot) {
  if (lot && lot->close_first([slot](const net::parked& p) {
        const auto& c = as_connection(p);
        return c.served > 0 && c.count.slot.get() == slot;
      })) {
    return true;
  }
  // Not parked yet (or TLS, which never parks): the list is newest first, so the last match is
  // the oldest. Cancelling completes its wait later; the connection then closes and gives its
  // slot back.
  session::session_handle* oldest = nullptr;
  for (auto& h : sessions) {
    if (h.idle && h.stream && h.served > 0 && h.slot == slot) {
      oldest = &h;
    }
  }
  if (oldest == nullptr) {
    return false;
  }
  oldest->stream->cancel();
  oldest->idle = false;  // chosen once
  return true;
}

}  // namespace wk::app
