// A keep-alive TCP relay on one thread, in two I/O models, to answer one question of issue 21
// before anyone rebuilds wkproxy's data path on io_uring: with the proxy's own work taken away,
// how much CPU per request does io_uring save over epoll on this kernel?
//
//   relay epoll PORT UPSTREAM_PORT   level-triggered epoll, non-blocking recv/send
//   relay uring PORT UPSTREAM_PORT   io_uring: multishot accept, multishot recv into a provided
//                                    buffer ring, sends batched into one io_uring_enter per loop
//   relay uring-plain ...            io_uring, one recv at a time into the connection's own
//                                    buffer (as an Asio-style read into a caller's buffer would)
//   relay hybrid ...                 uring-plain's operations, but the thread sleeps in
//                                    epoll_wait on an eventfd the ring signals: what keeping
//                                    Asio's epoll reactor and moving only socket I/O to a ring
//                                    would cost (IORING_SETUP_COOP_TASKRUN)
//   relay hybrid-ipi ...             the same with the ring's default task-run mode, where each
//                                    completion interrupts the sleeping thread
//   relay hybrid-asio ...            hybrid, with every socket also in the epoll set the way
//                                    Asio registers a socket (edge-triggered, read and write):
//                                    the readiness events it then reports are ignored
//
// Both listen on 127.0.0.1:PORT and open one upstream connection (127.0.0.1:UPSTREAM_PORT) per
// client connection, then copy bytes both ways until either side closes. No HTTP parsing, no
// timers, no logging: the floor under any proxy built on that I/O model. bench/uring-probe/run
// measures both next to wkproxy and nginx. Not part of wkproxy; built by the run script.
#include <liburing.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int listen_on(int port, bool nonblocking) {
  const int fd =
      ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0)
    die("socket");
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const sockaddr_in a = loopback(port);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
    die("bind");
  if (::listen(fd, 4096) != 0)
    die("listen");
  return fd;
}

void no_delay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// A blocking connect (loopback: immediate); the connection count is fixed during a keep-alive
// run, so its cost is outside what is measured.
int connect_upstream(int port, bool nonblocking) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die("socket");
  const sockaddr_in a = loopback(port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  no_delay(fd);
  if (nonblocking)
    ::fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}

// ---------------------------------------------------------------------------------------------
// epoll: a connection is two sockets; side s reads fd[s] and writes fd[1 - s]. What a send could
// not take waits in pending[s], and fd[s] is not read until it has gone.

struct epoll_conn {
  std::array<int, 2> fd{-1, -1};
  std::array<std::string, 2> pending;
  std::array<std::uint32_t, 2> interest{0, 0};
  bool dead = false;  // closed in this batch of events; freed after it
};

std::uint64_t tag(void* p, int side) {
  return reinterpret_cast<std::uintptr_t>(p) | static_cast<std::uintptr_t>(side);
}

int run_epoll(int port, int upstream_port) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  const int lfd = listen_on(port, true);
  epoll_event lev{};
  lev.events = EPOLLIN;
  lev.data.u64 = 0;  // the listener: no connection pointer is 0
  ::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
  static std::array<char, 65536> buf;

  auto update = [ep](epoll_conn* c, int x) {
    const std::uint32_t want =
        (c->pending[x].empty() ? EPOLLIN : 0U) | (c->pending[1 - x].empty() ? 0U : EPOLLOUT);
    if (want == c->interest[x])
      return;
    c->interest[x] = want;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = tag(c, x);
    ::epoll_ctl(ep, EPOLL_CTL_MOD, c->fd[x], &ev);
  };
  std::vector<epoll_conn*> dropped;  // a later event of the same batch may name them
  auto drop = [&dropped](epoll_conn* c) {
    ::close(c->fd[0]);  // closing removes them from the epoll set
    ::close(c->fd[1]);
    c->dead = true;
    dropped.push_back(c);
  };

  std::array<epoll_event, 128> events{};
  for (;;) {
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0 && errno != EINTR)
      die("epoll_wait");
    for (int i = 0; i < n; ++i) {
      const std::uint64_t u = events[i].data.u64;
      if (u == 0) {
        for (;;) {
          const int cfd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0)
            break;
          const int ufd = connect_upstream(upstream_port, true);
          if (ufd < 0) {
            ::close(cfd);
            continue;
          }
          no_delay(cfd);
          auto* c = new epoll_conn;
          c->fd = {cfd, ufd};
          for (int x = 0; x < 2; ++x) {
            c->interest[x] = EPOLLIN;
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.u64 = tag(c, x);
            ::epoll_ctl(ep, EPOLL_CTL_ADD, c->fd[x], &ev);
          }
        }
        continue;
      }
      auto* c = reinterpret_cast<epoll_conn*>(u & ~std::uint64_t{1});
      if (c->dead)
        continue;
      const int x = static_cast<int>(u & 1);
      bool dead = false;
      if ((events[i].events & EPOLLOUT) != 0) {  // fd[x] can take what side 1 - x holds
        std::string& p = c->pending[1 - x];
        const ssize_t w = ::send(c->fd[x], p.data(), p.size(), MSG_NOSIGNAL);
        if (w > 0)
          p.erase(0, static_cast<std::size_t>(w));
        dead = w < 0 && errno != EAGAIN;
        if (!dead) {
          update(c, x);
          update(c, 1 - x);
        }
      }
      if (!dead && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0 &&
          c->pending[x].empty()) {
        const ssize_t r = ::recv(c->fd[x], buf.data(), buf.size(), 0);
        if (r > 0) {
          const ssize_t w =
              ::send(c->fd[1 - x], buf.data(), static_cast<std::size_t>(r), MSG_NOSIGNAL);
          if (w < 0 && errno != EAGAIN) {
            dead = true;
          } else if (w < r) {
            c->pending[x].assign(buf.data() + (w > 0 ? w : 0),
                                 static_cast<std::size_t>(r - (w > 0 ? w : 0)));
            update(c, x);
            update(c, 1 - x);
          }
        } else {
          dead = r == 0 || errno != EAGAIN;
        }
      }
      if (dead)
        drop(c);
    }
    for (epoll_conn* c : dropped)
      delete c;
    dropped.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// io_uring: every socket has one multishot recv armed that picks buffers from a provided ring;
// each received buffer is sent as it is and goes back to the ring when the send completes. A
// direction has at most one send in flight (a later buffer waits in `queue`), which keeps the
// bytes in order. Completions of a loop are answered with new submissions in the same
// io_uring_submit_and_wait: one system call per loop, however many connections it serves.

constexpr unsigned kBuffers = 4096;
constexpr unsigned kBufferSize = 16384;
constexpr int kGroup = 0;

enum class style { multishot, plain, hybrid, hybrid_ipi, hybrid_asio };

enum op : std::uint64_t { op_accept = 0, op_recv = 1, op_send = 2 };

struct uring_conn {
  std::array<int, 2> fd{-1, -1};
  int in_flight = 0;  // armed recvs and sends: freed when 0 after closing
  bool closing = false;
  struct direction {
    bool sending = false;
    std::uint16_t bid = 0;
    std::uint32_t len = 0, off = 0;
    std::deque<std::pair<std::uint16_t, std::uint32_t>> queue;
  };
  std::array<direction, 2> dir;
  // plain and hybrids: each side's buffer, left uninitialised (untouched pages)
  std::array<std::array<char, kBufferSize>, 2> own;
};

struct uring_relay {
  io_uring ring{};
  io_uring_buf_ring* br = nullptr;
  char* buffers = nullptr;
  int lfd = -1;
  int upstream_port = 0;
  style how = style::multishot;
  int ep = -1;  // the hybrids' epoll set

  static std::uint64_t data(uring_conn* c, int side, op o) {
    return reinterpret_cast<std::uintptr_t>(c) | (static_cast<std::uint64_t>(side) << 2) | o;
  }

  io_uring_sqe* sqe() {
    io_uring_sqe* s = io_uring_get_sqe(&ring);
    if (s == nullptr) {
      io_uring_submit(&ring);
      s = io_uring_get_sqe(&ring);
      if (s == nullptr)
        die("io_uring_get_sqe");
    }
    return s;
  }

  void recycle(std::uint16_t bid) {
    io_uring_buf_ring_add(br, buffers + static_cast<std::size_t>(bid) * kBufferSize, kBufferSize,
                          bid, io_uring_buf_ring_mask(kBuffers), 0);
    io_uring_buf_ring_advance(br, 1);
  }

  void arm_accept() {
    io_uring_sqe* s = sqe();
    io_uring_prep_multishot_accept(s, lfd, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, op_accept);
  }

  void arm_recv(uring_conn* c, int side) {
    io_uring_sqe* s = sqe();
    if (how == style::multishot) {
      io_uring_prep_recv_multishot(s, c->fd[side], nullptr, 0, 0);
      s->flags |= IOSQE_BUFFER_SELECT;
      s->buf_group = kGroup;
    } else {
      io_uring_prep_recv(s, c->fd[side], c->own[side].data(), kBufferSize, 0);
    }
    io_uring_sqe_set_data64(s, data(c, side, op_recv));
    ++c->in_flight;
  }

  void send(uring_conn* c, int side) {  // the direction's current buffer, from `off`
    auto& d = c->dir[side];
    io_uring_sqe* s = sqe();
    char* base = how == style::multishot ? buffers + static_cast<std::size_t>(d.bid) * kBufferSize
                                         : c->own[side].data();
    io_uring_prep_send(s, c->fd[1 - side], base + d.off, d.len - d.off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, data(c, side, op_send));
    ++c->in_flight;
  }

  void start_send(uring_conn* c, int side, std::uint16_t bid, std::uint32_t len) {
    auto& d = c->dir[side];
    d.sending = true;
    d.bid = bid;
    d.len = len;
    d.off = 0;
    send(c, side);
  }

  void close_conn(uring_conn* c) {
    if (!c->closing) {
      c->closing = true;
      // Ends both multishot recvs (they complete with 0) and fails any send in flight.
      ::shutdown(c->fd[0], SHUT_RDWR);
      ::shutdown(c->fd[1], SHUT_RDWR);
      for (auto& d : c->dir) {
        for (auto [bid, len] : d.queue)
          recycle(bid);
        d.queue.clear();
      }
    }
    if (c->in_flight == 0) {
      ::close(c->fd[0]);
      ::close(c->fd[1]);
      delete c;
    }
  }

  void on_accept(const io_uring_cqe* cqe) {
    if ((cqe->flags & IORING_CQE_F_MORE) == 0)
      arm_accept();
    if (cqe->res < 0)
      return;
    const int ufd = connect_upstream(upstream_port, false);
    if (ufd < 0) {
      ::close(cqe->res);
      return;
    }
    no_delay(cqe->res);
    auto* c = new uring_conn;
    c->fd = {cqe->res, ufd};
    if (how == style::hybrid_asio) {
      for (int fd : c->fd) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLERR | EPOLLHUP | EPOLLET;
        ev.data.u64 = 1;
        ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
      }
    }
    arm_recv(c, 0);
    arm_recv(c, 1);
  }

  void on_recv(uring_conn* c, int side, const io_uring_cqe* cqe) {
    const bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (!more)
      --c->in_flight;
    if (cqe->res > 0) {
      const auto bid = static_cast<std::uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
      auto& d = c->dir[side];
      if (c->closing) {
        if (how == style::multishot)
          recycle(bid);
      } else if (d.sending) {
        d.queue.emplace_back(bid, static_cast<std::uint32_t>(cqe->res));
      } else {
        start_send(c, side, bid, static_cast<std::uint32_t>(cqe->res));
      }
      // multishot: re-armed when the kernel ended it; plain: when the send has completed
      if (how == style::multishot && !more && !c->closing)
        arm_recv(c, side);
      return;
    }
    if (cqe->res == -ENOBUFS && !c->closing) {  // the ring ran dry: more come back with sends
      arm_recv(c, side);
      return;
    }
    close_conn(c);  // 0 (the peer closed) or an error
  }

  void on_send(uring_conn* c, int side, const io_uring_cqe* cqe) {
    --c->in_flight;
    auto& d = c->dir[side];
    if (cqe->res > 0 && !c->closing && d.off + static_cast<std::uint32_t>(cqe->res) < d.len) {
      d.off += static_cast<std::uint32_t>(cqe->res);  // a short send: the rest
      send(c, side);
      return;
    }
    if (how == style::multishot)
      recycle(d.bid);
    d.sending = false;
    if (cqe->res <= 0 || c->closing) {
      close_conn(c);
      return;
    }
    if (how != style::multishot) {  // the buffer is free: read the next bytes into it
      arm_recv(c, side);
      return;
    }
    if (!d.queue.empty()) {
      const auto [bid, len] = d.queue.front();
      d.queue.pop_front();
      start_send(c, side, bid, len);
    }
  }

  int run(int port, int up, style st) {
    upstream_port = up;
    how = st;
    io_uring_params p{};
    // Deferred task work runs only inside io_uring_enter, which the hybrids never sleep in.
    const bool hybrid = st == style::hybrid || st == style::hybrid_ipi || st == style::hybrid_asio;
    p.flags = IORING_SETUP_SINGLE_ISSUER;
    if (!hybrid)
      p.flags |= IORING_SETUP_DEFER_TASKRUN;
    if (st == style::hybrid || st == style::hybrid_asio)
      p.flags |= IORING_SETUP_COOP_TASKRUN;
    p.cq_entries = 65536;
    p.flags |= IORING_SETUP_CQSIZE;
    if (int e = io_uring_queue_init_params(4096, &ring, &p); e < 0) {
      errno = -e;
      die("io_uring_queue_init_params");
    }
    if (st == style::multishot) {
      const std::size_t ring_bytes = kBuffers * sizeof(io_uring_buf);
      void* mem =
          ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
      if (mem == MAP_FAILED)
        die("mmap");
      br = static_cast<io_uring_buf_ring*>(mem);
      io_uring_buf_ring_init(br);
      io_uring_buf_reg reg{};
      reg.ring_addr = reinterpret_cast<std::uintptr_t>(mem);
      reg.ring_entries = kBuffers;
      reg.bgid = kGroup;
      if (int e = io_uring_register_buf_ring(&ring, &reg, 0); e < 0) {
        errno = -e;
        die("io_uring_register_buf_ring");
      }
      buffers = static_cast<char*>(std::aligned_alloc(4096, std::size_t{kBuffers} * kBufferSize));
      for (unsigned i = 0; i < kBuffers; ++i)
        recycle(static_cast<std::uint16_t>(i));
    }

    lfd = listen_on(port, false);
    arm_accept();
    if (hybrid) {
      const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (efd < 0 || io_uring_register_eventfd(&ring, efd) < 0)
        die("eventfd");
      ep = ::epoll_create1(EPOLL_CLOEXEC);
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLET;  // every signal is an edge: no read() to reset it
      ::epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
    }
    for (;;) {
      if (hybrid) {
        io_uring_submit(&ring);
        if (io_uring_cq_ready(&ring) == 0) {
          std::array<epoll_event, 128> evs{};
          if (::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), -1) < 0 && errno != EINTR)
            die("epoll_wait");
        }
      } else if (const int e = io_uring_submit_and_wait(&ring, 1); e < 0 && e != -EINTR) {
        errno = -e;
        die("io_uring_submit_and_wait");
      }
      unsigned head = 0;
      unsigned seen = 0;
      io_uring_cqe* cqe = nullptr;
      io_uring_for_each_cqe(&ring, head, cqe) {
        ++seen;
        const std::uint64_t u = io_uring_cqe_get_data64(cqe);
        const auto o = static_cast<op>(u & 3);
        auto* c = reinterpret_cast<uring_conn*>(u & ~std::uint64_t{7});
        const int side = static_cast<int>((u >> 2) & 1);
        if (o == op_accept) {
          on_accept(cqe);
        } else if (o == op_recv) {
          on_recv(c, side, cqe);
        } else if (o == op_send) {
          on_send(c, side, cqe);
        }
      }
      io_uring_cq_advance(&ring, seen);
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(
        stderr,
        "usage: relay epoll|uring|uring-plain|hybrid|hybrid-ipi|hybrid-asio PORT UPSTREAM_PORT\n");
    return 2;
  }
  const std::string_view mode = argv[1];
  const int port = std::atoi(argv[2]);
  const int up = std::atoi(argv[3]);
  if (mode == "epoll")
    return run_epoll(port, up);
  static uring_relay r;
  if (mode == "uring")
    return r.run(port, up, style::multishot);
  if (mode == "uring-plain")
    return r.run(port, up, style::plain);
  if (mode == "hybrid")
    return r.run(port, up, style::hybrid);
  if (mode == "hybrid-ipi")
    return r.run(port, up, style::hybrid_ipi);
  if (mode == "hybrid-asio")
    return r.run(port, up, style::hybrid_asio);
  std::fprintf(stderr, "relay: unknown mode %s\n", argv[1]);
  return 2;
}
