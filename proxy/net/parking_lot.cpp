#include "net/parking_lot.hpp"

#include <boost/system/system_error.hpp>

#include <array>
#include <cerrno>

#include <sys/epoll.h>
#include <unistd.h>

namespace wk::net {

namespace asio = boost::asio;

parked::~parked() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

parking_lot::parking_lot(const asio::any_io_executor& ex, wake_fn wake)
    : epoll_(ex), timer_(ex), wake_(std::move(wake)) {
  const int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) {
    throw boost::system::system_error(errno, boost::system::system_category(), "epoll_create1");
  }
  epoll_.assign(fd);
}

parking_lot::~parking_lot() {
  while (!entries_.empty()) {
    delete take(entries_.front());
  }
}

bool parking_lot::park(std::unique_ptr<parked>& p) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.ptr = p.get();
  if (::epoll_ctl(epoll_.native_handle(), EPOLL_CTL_ADD, p->fd(), &ev) != 0) {
    return false;
  }
  entries_.push_back(*p.release());
  ++count_;
  watch();
  tick();
  return true;
}

parked* parking_lot::take(parked& p) {
  p.unlink();
  --count_;
  ::epoll_ctl(epoll_.native_handle(), EPOLL_CTL_DEL, p.fd(), nullptr);
  return &p;
}

void parking_lot::watch() {
  if (watching_) {
    return;
  }
  watching_ = true;
  epoll_.async_wait(asio::posix::stream_descriptor::wait_read,
                    [this](const boost::system::error_code& ec) {
                      if (ec == asio::error::operation_aborted) {
                        return;  // the lot is being destroyed
                      }
                      watching_ = false;
                      ready();
                    });
}

void parking_lot::ready() {
  std::array<epoll_event, 64> events;
  for (;;) {
    const int n =
        ::epoll_wait(epoll_.native_handle(), events.data(), static_cast<int>(events.size()), 0);
    if (n <= 0) {
      break;
    }
    for (int i = 0; i < n; ++i) {
      auto* p = static_cast<parked*>(events[static_cast<std::size_t>(i)].data.ptr);
      wake_(std::unique_ptr<parked>(take(*p)));
    }
    if (n < static_cast<int>(events.size())) {
      break;
    }
  }
  if (!entries_.empty()) {
    watch();
  }
}

// Closes entries parked past their deadline, every deadline_tick while any is parked.
void parking_lot::tick() {
  if (ticking_) {
    return;
  }
  ticking_ = true;
  timer_.expires_after(deadline_tick);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted) {
      return;
    }
    ticking_ = false;
    const auto now = parked::clock::now();
    close_if([&](const parked& p) { return p.deadline() <= now; });
    if (!entries_.empty()) {
      tick();
    }
  });
}

}  // namespace wk::net
