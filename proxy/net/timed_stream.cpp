#include "net/timed_stream.hpp"

#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>

#include <cassert>
#include <optional>

namespace wk::net {

namespace asio = boost::asio;

// The sweep of one io_context: a list of its live streams and a timer that ticks while the
// list is not empty (an idle process does not wake up).
class deadline_service : public asio::execution_context::service {
public:
  static asio::execution_context::id id;

  explicit deadline_service(asio::execution_context& ctx) : service(ctx) {}

  void add(timed_stream* s) { streams_.push_front(*s); }

  // Called when an operation starts: the sweep ticks only while operations are pending, so
  // an io_context with nothing to do runs out of work (and an idle process does not wake).
  void ensure_ticking(timed_stream* s) {
    if (ticking_ || shut_down_) {
      return;
    }
    if (!timer_) {
      timer_.emplace(s->socket_.get_executor());
    }
    ticking_ = true;
    arm();
  }

  void remove(timed_stream* s) noexcept { s->hook_.unlink(); }

  // Puts `to` in `from`'s place in the list (a move).
  void replace(timed_stream* from, timed_stream* to) noexcept {
    streams_.insert(streams_.iterator_to(*from), *to);
    from->hook_.unlink();
  }

private:
  void shutdown() override {
    shut_down_ = true;
    timer_.reset();
  }

  void arm() {
    timer_->expires_after(deadline_tick);
    timer_->async_wait([this](const boost::system::error_code& ec) {
      if (ec || shut_down_) {
        ticking_ = false;
        return;
      }
      sweep();
    });
  }

  void sweep() {
    const auto now = timed_stream::clock::now();
    bool pending = false;
    for (auto& s : streams_) {
      if (s.pending_ == 0 || s.timed_out_) {
        continue;
      }
      pending = true;
      // Pending operations complete later (never inline), so the list stays as it is here.
      if (s.expiry_ <= now) {
        s.timed_out_ = true;
        if (s.answer_on_expiry_) {
          s.cancel();
        } else {
          s.close();
        }
      } else if (s.park_at_ <= now) {
        s.park_at_ = timed_stream::clock::time_point::max();
        s.park_requested_ = true;
        s.cancel();
      }
    }
    if (!pending) {
      ticking_ = false;
      return;
    }
    arm();
  }

  using list =
      boost::intrusive::list<timed_stream,
                             boost::intrusive::member_hook<
                                 timed_stream, decltype(timed_stream::hook_), &timed_stream::hook_>,
                             boost::intrusive::constant_time_size<false>>;
  list streams_;
  std::optional<asio::steady_timer> timer_;
  bool ticking_ = false;
  bool shut_down_ = false;
};

asio::execution_context::id deadline_service::id;

namespace {

deadline_service& service_for(const timed_stream::executor_type& ex) {
  return asio::use_service<deadline_service>(asio::query(ex, asio::execution::context));
}

}  // namespace

timed_stream::timed_stream(socket_type socket) : socket_(std::move(socket)) {
  link();
}

timed_stream::timed_stream(const executor_type& ex) : socket_(ex) {
  link();
}

timed_stream::timed_stream(timed_stream&& other) noexcept
    : socket_(std::move(other.socket_)), expiry_(other.expiry_), park_at_(other.park_at_),
      service_(other.service_), timed_out_(other.timed_out_) {
  assert(other.pending_ == 0);
  service_->replace(&other, this);
  other.service_ = nullptr;
}

timed_stream::~timed_stream() {
  unlink();
}

void timed_stream::link() {
  service_ = &service_for(socket_.get_executor());
  service_->add(this);
}

void timed_stream::started() {
  ++pending_;
  service_->ensure_ticking(this);
}

void timed_stream::unlink() noexcept {
  if (service_ != nullptr) {
    service_->remove(this);
    service_ = nullptr;
  }
}

}  // namespace wk::net
