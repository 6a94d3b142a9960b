#pragma once
// ISO 8601 UTC time stamps, written without the C library's locale or time zone. Pure.

#include <chrono>
#include <string>

namespace wk::core {

// "2024-05-01T14:03:07.123Z": milliseconds, as the access log, the validation events and the
// status page write them.
void append_iso8601_millis(std::string& out, std::chrono::system_clock::time_point t);
std::string iso8601_millis(std::chrono::system_clock::time_point t);

// "2024-05-01T14:03:07Z": whole seconds, as the process log writes them.
void append_iso8601_seconds(std::string& out, std::chrono::system_clock::time_point t);
std::string iso8601_seconds(std::chrono::system_clock::time_point t);

}  // namespace wk::core
