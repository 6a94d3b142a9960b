#include "observe/log_file.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

namespace wk::observe {

std::shared_ptr<const log_file> log_file::standard(int fd) {
  return std::make_shared<const log_file>(fd, false, std::string());
}

std::variant<std::shared_ptr<const log_file>, std::string> log_file::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    return "cannot open " + path + ": " + std::strerror(errno);
  }
  return std::make_shared<const log_file>(fd, true, path);
}

log_file::~log_file() {
  if (owned_ && fd_ >= 0) {
    ::close(fd_);
  }
}

bool log_file::write_all(std::string_view bytes) const {
  while (!bytes.empty()) {
    const auto n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace wk::observe
