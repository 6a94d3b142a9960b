#pragma once
// What the I/O layers share about Asio: the completion token for coroutines that handle errors
// themselves, and how an error code reads as a timeout. Header-only; the pure layers (core's own
// sources, config, routing, wire, http) do not include it.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/system/error_code.hpp>

namespace wk::core {

// `co_await op(core::nothrow)` gives a tuple, error_code first, and never throws.
inline constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);

// True when a Beast stream operation ended because its deadline (expires_after) passed.
inline bool is_timeout(const boost::system::error_code& ec) noexcept {
  return ec == boost::beast::error::timeout;
}

}  // namespace wk::core
