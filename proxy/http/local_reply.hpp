#pragma once
// Replies the proxy writes itself (errors, 100 Continue), as complete wire bytes.

#include "core/failure.hpp"

#include <string>
#include <string_view>

namespace wk::http {

// A complete HTTP/1.1 response for a failure: status line, Content-Type: text/plain,
// Content-Length, Connection: close, and the body "wkproxy: <describe(f)>[: detail]\n".
// `head` omits the body (HEAD request) but keeps Content-Length. Detail is sanitized (control
// characters replaced) so that no header or body injection is possible.
std::string error_reply(core::failure f, std::string_view detail, bool head);

// A plain reply with the given status and body, used for tunnelled admin-free answers.
std::string status_reply(unsigned status, std::string_view body, bool keep_alive, bool head);

// A validation answer: `status`, Content-Type text/plain, Content-Length, Cache-Control:
// no-store (validation answers are never cached), `location` when not empty. `keep_alive`
// false adds Connection: close; `head` omits the body. Returns "" if `location` is not a safe
// field value (it comes from config, but a reply is never split).
std::string validation_reply(unsigned status, std::string_view location, std::string_view body,
                             bool keep_alive, bool head);

}  // namespace wk::http
