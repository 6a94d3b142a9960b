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

// Nothing is closed here: a keep-alive connection between requests may have its client's next
// request on the wire right now, and closing it would lose that request (the client sees a
// reset or an empty answer, and most clients do not retry). Each connection is kept until its
// next request, which is answered with Connection: close, or until its own idle deadline;
// close_idle() ends whatever is still idle when the drain times out.
void worker_state::begin_stop() {
  stopping = true;
  update_closing();
}

void worker_state::begin_handoff(std::unique_ptr<session::handoff_sender> sender,
                                 const boost::asio::any_io_executor& ex) {
  handoff = std::move(sender);
  update_closing();
  // Cancelling completes each wait later, never inline: the list stays as it is while walked.
  for (auto& h : sessions) {
    if (h.idle && h.movable && h.stream != nullptr) {
      h.hand_off = true;
      h.stream->cancel();
    }
  }
  session::hand_off_parked(this, ex);
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
