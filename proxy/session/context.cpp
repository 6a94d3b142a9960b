#include "session/context.hpp"

#include "session/handoff.hpp"

namespace wk::session {

context::context() = default;
context::~context() = default;

bool context::handing_off() const {
  return handoff != nullptr && handoff->open();
}

void context::update_closing() {
  closing_movable = stopping && !handing_off();
}

std::unique_ptr<body_buffer> context::take_buffer() {
  if (free_buffers.empty()) {
    return std::make_unique<body_buffer>();
  }
  auto b = std::move(free_buffers.back());
  free_buffers.pop_back();
  return b;
}

void context::give_buffer(std::unique_ptr<body_buffer> b) {
  // Keep as many as were ever busy at once, up to a bound (1,024 x 16 KiB = 16 MiB).
  if (free_buffers.size() < 1024) {
    free_buffers.push_back(std::move(b));
  }
}

routing::decision context::take_decision() {
  if (free_decisions.empty()) {
    return {};
  }
  auto d = std::move(free_decisions.back());
  free_decisions.pop_back();
  d.clear();  // a request that fails before routing must not log the previous one's host
  return d;
}

std::string context::take_string() {
  if (free_strings.empty()) {
    return {};
  }
  auto s = std::move(free_strings.back());
  free_strings.pop_back();
  s.clear();
  return s;
}

void context::give_string(std::string s) {
  // An unusually long head does not stay: the list holds ordinary ones, bounded in number.
  if (free_strings.size() < 256 && s.capacity() <= 4096) {
    free_strings.push_back(std::move(s));
  }
}

void context::give_decision(routing::decision d) {
  if (free_decisions.size() < 1024) {  // as many as were ever in flight at once, bounded
    free_decisions.push_back(std::move(d));
  }
}

}  // namespace wk::session
