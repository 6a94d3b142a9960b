#pragma once
// Where log lines go: stdout, stderr, or a file opened for appending. One log_file is shared
// (std::shared_ptr<const log_file>) by every writer of a stream; a file's descriptor is closed
// by the destructor, that is when the last writer has let go. That is what makes a reopen
// (SIGUSR1, after logrotate renamed the file) safe without locks: the main thread opens a new
// log_file and hands it to the writers, and the old descriptor stays valid until none of them
// can be writing to it any more.

#include <memory>
#include <string>
#include <string_view>
#include <variant>

namespace wk::observe {

class log_file {
public:
  // stdout (1) or stderr (2); never closed.
  [[nodiscard]] static std::shared_ptr<const log_file> standard(int fd);

  // Opens (or creates, mode 0640) `path` with O_WRONLY|O_APPEND|O_CLOEXEC: every write(2) lands
  // at the current end, so whole lines from several threads never interleave, and a file
  // renamed away keeps what was written to it. On failure, "cannot open PATH: REASON".
  [[nodiscard]] static std::variant<std::shared_ptr<const log_file>, std::string>
  open(const std::string& path);

  log_file(int fd, bool owned, std::string path) : fd_(fd), owned_(owned), path_(std::move(path)) {}
  log_file(const log_file&) = delete;
  log_file& operator=(const log_file&) = delete;
  ~log_file();

  // Writes all of `bytes`, retrying short writes and EINTR, so that a buffer of whole lines
  // lands whole in this file. False when the file refused them (disk full, closed pipe): the
  // rest is dropped, since a log that cannot be written must not stop the proxy.
  [[nodiscard]] bool write_all(std::string_view bytes) const;

  [[nodiscard]] int fd() const { return fd_; }
  [[nodiscard]] const std::string& path() const { return path_; }  // "" for stdout and stderr

private:
  int fd_;
  bool owned_;
  std::string path_;
};

}  // namespace wk::observe
