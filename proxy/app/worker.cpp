#include "app/worker.hpp"

#include "app/connection.hpp"
#include "core/asio.hpp"
#include "http/local_reply.hpp"
#include "net/ring.hpp"
#include "observe/counters.hpp"
#include "observe/log.hpp"
#include "session/keepalive.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>
#include <cerrno>
#include <exception>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace wk::app {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

using core::nothrow;

// Over the connection limit: a fast 503 (best effort, never blocking) and close.
void refuse(tcp::socket& s) {
  static const std::string reply =
      http::error_reply(core::failure::too_many_connections, "", false);
  (void)::send(s.native_handle(), reply.data(), reply.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  boost::system::error_code ec;
  s.close(ec);
}

// How many connections one accept loop takes in a row before it lets the worker's other work
// run (a connection burst must not stall the requests already being served).
constexpr int accept_burst = 32;

// Accepts with accept4(2) straight on the listening descriptor (net::accept_connection: born
// non-blocking and close-on-exec, no ioctl, no epoll_ctl(DEL) at close), and every connection
// already queued is taken at one wakeup, each started at once (see start_client) rather than
// through a completion handler per accept.
asio::awaitable<void> accept_loop(worker_state* w, tcp::acceptor* acceptor,
                                  std::shared_ptr<net::listener_slot> slot) {
  auto exec = co_await asio::this_coro::executor;
  asio::steady_timer pause(exec);
  net::accept_backoff backoff;
  boost::system::error_code ec;
  acceptor->native_non_blocking(true, ec);  // shared with the other workers' dups: all want it
  int burst = 0;
  for (;;) {
    tcp::endpoint peer;
    // A closed acceptor (a stop, an upgrade, a removed listener) has no descriptor: EBADF.
    auto socket = net::accept_connection(*acceptor, exec, peer, ec);
    if (ec) {
      if (!acceptor->is_open()) {
        co_return;
      }
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        burst = 0;
        auto [wait_ec] = co_await acceptor->async_wait(tcp::acceptor::wait_read, nothrow);
        if (wait_ec == asio::error::operation_aborted || !acceptor->is_open()) {
          co_return;
        }
        continue;
      }
      if (ec == asio::error::interrupted || ec == asio::error::connection_aborted ||
          ec.value() == EPROTO) {
        continue;  // that connection is gone already; the next may be waiting
      }
      // EMFILE and friends: wait instead of spinning; the connection stays queued.
      w->report.counters->accept_errors.fetch_add(1, std::memory_order_relaxed);
      if (!backoff.in_episode()) {
        observe::warn("accept on " + slot->name + ": " + ec.message() +
                      "; accepting again with a backoff of 10 ms up to 1 s, connections wait "
                      "in the listen queue");
      }
      pause.expires_after(backoff.failed());
      co_await pause.async_wait(nothrow);
      continue;
    }
    if (const auto failures = backoff.succeeded(); failures != 0) {
      observe::warn("accept on " + slot->name + ": accepting again after " +
                    std::to_string(failures) + " failed attempts");
    }
    if (slot->active.fetch_add(1, std::memory_order_relaxed) >= slot->max_connections) {
      // Full. An idle keep-alive connection gives way to the newcomer (the slot count is one
      // over until it has closed); without one, the newcomer gets a fast 503.
      if (w->make_room(slot.get())) {
        w->report.counters->count(observe::limit_event::idle_evicted);
      } else {
        slot->active.fetch_sub(1, std::memory_order_relaxed);
        w->report.counters->count(observe::limit_event::connections);
        refuse(socket);
        continue;
      }
    }
    start_client(w, std::move(socket), peer, slot);
    if (++burst == accept_burst) {
      burst = 0;
      co_await asio::post(exec, nothrow);
      if (!acceptor->is_open()) {
        co_return;
      }
    }
  }
}

// The pool-idle gauges, by upstream label.
void count_idle(worker_state& w) {
  std::array<std::int64_t, observe::worker_metrics::upstreams> idle{};
  const auto& rt = *w.runtime;
  w.pool.for_each_key([&](const std::string& key, std::size_t n) {
    auto label = observe::upstream_label::acm;
    if (key.starts_with(rt.origin.key)) {
      label = observe::upstream_label::origin;
    } else if (key.starts_with(rt.cloudfront.key)) {
      label = observe::upstream_label::cloudfront;
    }
    idle[static_cast<std::size_t>(label)] += static_cast<std::int64_t>(n);
  });
  for (std::size_t i = 0; i < idle.size(); ++i) {
    w.metrics.pool_idle[i].set(idle[i]);
  }
}

asio::awaitable<void> housekeeping(worker_state* w) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(std::chrono::milliseconds(250));
    auto [ec] = co_await timer.async_wait(nothrow);
    if (ec) {
      co_return;
    }
    w->log.flush();
    w->pool.expire(w->runtime->cfg->timeouts.upstream_idle);
    count_idle(*w);
    w->metrics.parked.set(static_cast<std::int64_t>(w->parked_count()));
  }
}

}  // namespace

worker::worker(unsigned index, std::shared_ptr<const runtime::snapshot> rt,
               std::shared_ptr<const observe::log_file> access_file, bool use_ring)
    : index_(index), use_ring_(use_ring), work_(asio::make_work_guard(ioc_)) {
  state_.runtime = std::move(rt);
  state_.log.set_destination(std::move(access_file), state_.runtime->cfg->access_log.format);
}

worker::~worker() {  // NOLINT(bugprone-exception-escape): see worker.hpp
  stop_and_join();
}

void worker::open_acceptor(const net::listener_socket& l) {
  int fd = ::fcntl(const_cast<tcp::acceptor&>(l.acceptor).native_handle(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    observe::error("worker " + std::to_string(index_) + ": dup failed for " + l.slot->name);
    return;
  }
  auto acceptor = std::make_unique<tcp::acceptor>(ioc_);
  boost::system::error_code ec;
  acceptor->assign(l.bound.protocol(), fd, ec);
  if (ec) {
    ::close(fd);
    observe::error("worker " + std::to_string(index_) + ": " + ec.message());
    return;
  }
  spawn_accept(acceptor.get(), l.slot);
  acceptors_.push_back(acceptor_entry{std::move(acceptor), l.slot});
}

void worker::start(const std::vector<std::unique_ptr<net::listener_socket>>& listeners) {
  for (const auto& l : listeners) {
    open_acceptor(*l);
  }
  spawn_housekeeping();
  thread_ = std::thread([this] {
    if (use_ring_) {
      std::unique_ptr<net::ring> rg;
      try {
        rg = std::make_unique<net::ring>(ioc_);
      } catch (const std::exception& e) {
        // The start-up probe passed, so this is unexpected (a limit on locked memory, say).
        observe::error("worker " + std::to_string(index_) + ": " + e.what() +
                       "; this worker runs on epoll");
      }
      if (rg) {
        ring_.store(rg.get());  // posts before this are run by the loop's first poll
        rg->run();
        ring_.store(nullptr);
        return;
      }
    }
    ioc_.run();
  });
}

void worker::add_listener(const net::listener_socket& l) {
  // The descriptor is duplicated now, on the main thread: `l` may be gone when the post runs.
  int fd = ::fcntl(const_cast<tcp::acceptor&>(l.acceptor).native_handle(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    observe::error("worker " + std::to_string(index_) + ": dup failed for " + l.slot->name);
    return;
  }
  post([this, fd, protocol = l.bound.protocol(), slot = l.slot] {
    auto acceptor = std::make_unique<tcp::acceptor>(ioc_);
    boost::system::error_code ec;
    acceptor->assign(protocol, fd, ec);
    if (ec) {
      ::close(fd);
      observe::error("worker " + std::to_string(index_) + ": " + ec.message());
      return;
    }
    if (state_.stopping) {
      return;  // the acceptor closes as it goes out of scope
    }
    spawn_accept(acceptor.get(), slot);
    acceptors_.push_back(acceptor_entry{std::move(acceptor), slot});
  });
}

void worker::remove_listener(const std::shared_ptr<net::listener_slot>& slot) {
  post([this, slot] {
    for (auto it = acceptors_.begin(); it != acceptors_.end();) {
      if (it->slot == slot) {
        boost::system::error_code ec;
        it->acceptor->close(ec);  // its accept loop ends with operation_aborted
        // Kept until the worker stops: the accept loop may still hold the pointer.
        ++it;
      } else {
        ++it;
      }
    }
  });
}

void worker::spawn_accept(tcp::acceptor* acceptor, std::shared_ptr<net::listener_slot> slot) {
  asio::co_spawn(ioc_, accept_loop(&state_, acceptor, std::move(slot)),
                 observe::log_exception{"accept loop"});
}

void worker::spawn_housekeeping() {
  asio::co_spawn(ioc_, housekeeping(&state_), observe::log_exception{"housekeeping"});
}

void worker::publish(std::shared_ptr<const runtime::snapshot> rt,
                     std::shared_ptr<const observe::log_file> access_file) {
  post([this, rt = std::move(rt), file = std::move(access_file)]() mutable {
    state_.log.set_destination(std::move(file), rt->cfg->access_log.format);
    state_.pool.retain_only(rt->upstream_keys());
    state_.runtime = std::move(rt);
  });
}

void worker::reopen_access_log(std::shared_ptr<const observe::log_file> file) {
  post([this, file = std::move(file)]() mutable {
    state_.log.set_destination(std::move(file), state_.runtime->cfg->access_log.format);
  });
}

void worker::begin_stop(int handoff) {
  post([this, handoff] {
    for (auto& a : acceptors_) {
      boost::system::error_code ec;
      a.acceptor->close(ec);
    }
    if (handoff >= 0) {
      state_.begin_handoff(std::make_unique<session::handoff_sender>(ioc_.get_executor(), handoff),
                           ioc_.get_executor());
    }
    state_.begin_stop();
    state_.log.flush();
  });
}

void worker::adopt(int fd, std::shared_ptr<net::listener_slot> slot, session::client_info info,
                   std::size_t served, std::string early) {
  post([this, fd, slot = std::move(slot), info = std::move(info), served,
        early = std::move(early)]() mutable {
    tcp::socket socket(ioc_);
    boost::system::error_code ec;
    socket.assign(info.socket_v6 ? tcp::v6() : tcp::v4(), fd, ec);
    if (ec) {
      ::close(fd);
      return;
    }
    socket.set_option(tcp::no_delay(true), ec);
    // Counted like an accepted connection, but never refused for the limit: it is a client
    // already being served, only by another process until now.
    slot->active.fetch_add(1, std::memory_order_relaxed);
    state_.report.counters->connections_taken_over.fetch_add(1, std::memory_order_relaxed);
    session::connection_count count(&state_, slot);
    info.slot = slot.get();
    info.listener_index = slot->metrics_index;
    session::serve_connection(std::move(count), std::move(socket), std::move(info),
                              std::move(early), served);
  });
}

void worker::close_idle() {
  post([this] { state_.close_idle(); });
}

void worker::wake() {
  if (net::ring* r = ring_.load()) {
    r->wake();
  }
}

void worker::stop_and_join() {
  if (!thread_.joinable()) {
    return;
  }
  post([this] {
    state_.log.flush();
    ioc_.stop();
  });
  thread_.join();
  state_.log.flush();
}

}  // namespace wk::app
