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
  auto b = free_buffers.take();
  return b ? std::move(b) : std::make_unique<body_buffer>();
}

void context::give_buffer(std::unique_ptr<body_buffer> b) {
  free_buffers.give(std::move(b));
}

routing::decision context::take_decision() {
  auto d = free_decisions.take();
  d.clear();  // a request that fails before routing must not log the previous one's host
  return d;
}

void context::give_decision(routing::decision d) {
  free_decisions.give(std::move(d));
}

std::string context::take_string() {
  auto s = free_strings.take();
  s.clear();
  return s;
}

void context::give_string(std::string s) {
  // An unusually long head does not stay: the list holds ordinary ones.
  if (s.capacity() <= 4096) {
    free_strings.give(std::move(s));
  }
}

void context::give_head(http::request_storage h) {
  if (h.bytes.capacity() <= 4096 && h.trailers.capacity() <= 4096) {
    free_heads.give(std::move(h));
  }
}

}  // namespace wk::session
