#pragma once
// A second event loop for quiet connections: their descriptors sit in an epoll set of their
// own (watched by the owner's io_context as one descriptor), with no Asio socket object,
// buffer or coroutine frame each. An entry leaves the lot when its descriptor becomes readable
// (handed to the wake callback, which owns it from then on), when its deadline passes (closed,
// checked every deadline_tick) or when the owner closes it.
//
// Used on one thread (its io_context's).

#include "net/timed_stream.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>

namespace wk::net {

// One parked descriptor; the owner derives from it to keep what it needs to resume.
class parked : public boost::intrusive::list_base_hook<
                   boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
public:
  using clock = std::chrono::steady_clock;

  parked(int fd, clock::time_point deadline) : fd_(fd), deadline_(deadline) {}
  parked(const parked&) = delete;
  parked& operator=(const parked&) = delete;
  virtual ~parked();  // closes the descriptor unless it was released

  int fd() const noexcept { return fd_; }
  clock::time_point deadline() const noexcept { return deadline_; }
  // The descriptor, now owned by the caller.
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

private:
  int fd_ = -1;
  clock::time_point deadline_;
};

class parking_lot {
public:
  // Called with an entry whose descriptor became readable (data, or the peer closing).
  using wake_fn = std::function<void(std::unique_ptr<parked>)>;

  parking_lot(const boost::asio::any_io_executor& ex, wake_fn wake);
  parking_lot(const parking_lot&) = delete;
  parking_lot& operator=(const parking_lot&) = delete;
  ~parking_lot();  // closes every entry still parked

  // Takes `p` in; false when its descriptor cannot be watched (`p` stays with the caller).
  bool park(std::unique_ptr<parked>& p);

  // Closes the oldest entry `pred` selects; false when none does.
  template <class Pred> bool close_first(Pred pred) {
    for (auto& entry : entries_) {
      if (pred(entry)) {
        delete take(entry);  // unlinks `entry`: the loop ends here
        return true;
      }
    }
    return false;
  }

  // Closes the entries `pred` selects.
  template <class Pred> void close_if(Pred pred) {
    for (auto it = entries_.begin(); it != entries_.end();) {
      auto& p = *it++;
      if (pred(p)) {
        delete take(p);
      }
    }
  }

  // Takes every entry out of the lot, oldest first, and gives each to `fn` (which owns it).
  template <class Fn> void take_all(Fn fn) {
    while (!entries_.empty()) {
      std::unique_ptr<parked> p(take(entries_.front()));
      fn(std::move(p));
    }
  }

  std::size_t size() const noexcept { return count_; }

private:
  // Unlinks `p` and removes its descriptor from the set; the caller owns it.
  parked* take(parked& p);
  void watch();
  void ready();
  void tick();

  using list = boost::intrusive::list<parked, boost::intrusive::constant_time_size<false>>;

  boost::asio::posix::stream_descriptor epoll_;
  boost::asio::steady_timer timer_;
  wake_fn wake_;
  list entries_;  // oldest first
  std::size_t count_ = 0;
  bool watching_ = false;
  bool ticking_ = false;
};

}  // namespace wk::net
