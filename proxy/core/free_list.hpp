#pragma once
// Objects a worker takes for one request and gives back after it, kept with their heap
// storage (a string's or vector's capacity, a buffer) so that a warm worker's requests allocate
// nothing. Bounded: it keeps as many as were ever in use at once, up to `bound`. One thread.

#include <cstddef>
#include <utility>
#include <vector>

namespace wk::core {

template <class T> class free_list {
public:
  explicit free_list(std::size_t bound) : bound_(bound) {}

  // One given back earlier, as it was given (the caller resets what it must), or T{}.
  T take() {
    if (items_.empty()) {
      return T{};
    }
    T t = std::move(items_.back());
    items_.pop_back();
    return t;
  }

  // Kept unless `bound` are kept already.
  void give(T t) {
    if (items_.size() < bound_) {
      items_.push_back(std::move(t));
    }
  }

  bool empty() const { return items_.empty(); }
  std::size_t size() const { return items_.size(); }

private:
  std::vector<T> items_;
  std::size_t bound_;
};

}  // namespace wk::core
