#include "upstream/pool.hpp"

#include "observe/log.hpp"

#include <algorithm>
#include <chrono>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

namespace wk::upstream {

namespace {

// A pooled connection is usable when nothing is waiting on it: no bytes (an HTTP server may
// not send unasked; whatever it sent belongs to no request of ours) and no end-of-stream. One
// non-blocking peek, no allocation.
bool still_open(connection& c) {
  if (c.buffer.size() != 0) {
    return false;
  }
  if (auto* tls = std::get_if<tls_stream>(&c.stream)) {
    // Bytes can also wait inside the TLS layer: decrypted but unread in OpenSSL's record
    // buffer (a read asked for less than the record held), or ciphertext in the BIO that
    // Asio feeds it from. The socket peek below sees neither.
    SSL* ssl = tls->native_handle();
    if (SSL_has_pending(ssl) == 1 || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0) {
      return false;
    }
  }
  auto& sock = c.lowest().socket();
  if (!sock.is_open()) {
    return false;
  }
  char b;
  auto n = ::recv(sock.native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

std::unique_ptr<connection> pool::take(const std::string& key) {
  auto it = idle_.find(key);
  if (it == idle_.end()) {
    return nullptr;
  }
  auto& list = it->second;
  while (!list.empty()) {
    auto c = std::move(list.back());
    list.pop_back();
    if (still_open(*c)) {
      return c;
    }
    if (observe::enabled(observe::level::debug)) {
      observe::debug("upstream: pooled connection to " + key +
                     " closed by the backend, or sent bytes nobody asked for, after " +
                     std::to_string(c->uses) + " request(s); not reused");
    }
  }
  return nullptr;
}

void pool::give(std::unique_ptr<connection> c) {
  auto& list = idle_[c->key];
  if (list.size() >= max_idle_per_key_) {
    return;  // c closes here
  }
  c->idle_since = std::chrono::steady_clock::now();
  list.push_back(std::move(c));
}

void pool::expire(std::chrono::steady_clock::duration max_idle) {
  auto limit = std::chrono::steady_clock::now() - max_idle;
  for (auto& [key, list] : idle_) {
    // Oldest first: everything before the first fresh entry is stale.
    auto fresh = std::find_if(list.begin(), list.end(),
                              [&](const auto& c) { return c->idle_since > limit; });
    if (fresh != list.begin() && observe::enabled(observe::level::debug)) {
      observe::debug("upstream: closing " + std::to_string(fresh - list.begin()) +
                     " idle connection(s) to " + key + " (timeouts.upstream_idle)");
    }
    list.erase(list.begin(), fresh);
  }
}

void pool::retain_only(const std::vector<std::string>& keep) {
  std::erase_if(idle_, [&](const auto& kv) {
    const bool drop = std::find(keep.begin(), keep.end(), kv.first) == keep.end();
    if (drop && !kv.second.empty() && observe::enabled(observe::level::debug)) {
      observe::debug("upstream: closing " + std::to_string(kv.second.size()) +
                     " idle connection(s) to " + kv.first + " (upstream changed by a reload)");
    }
    return drop;
  });
}

std::size_t pool::idle_count() const {
  std::size_t n = 0;
  for (const auto& [key, list] : idle_) {
    n += list.size();
  }
  return n;
}

}  // namespace wk::upstream
