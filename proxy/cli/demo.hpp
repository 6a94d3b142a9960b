#pragma once
// `wkproxy demo [--once] [--port N]`: the split, working, with no config and no network. In
// one process, on loopback: a small origin (the customer's existing server), a CloudFront
// stand-in that answers the validation token with its redirect to ACM, an ACM validation
// stand-in over HTTPS with a throwaway CA made on the spot, and the real proxy (app::run_server)
// in front with a generated config. It shows a page from the origin, the token through the
// CloudFront stand-in and a file that is not a token going to the origin, runs `check` against
// itself (PASS), then keeps serving, with the status page on the admin port, until Ctrl-C.
// --once stops after the check and exits with its status (0: PASS), for tests.

#include <string>

namespace wk::cli {

int run_demo(int argc, char** argv, const std::string& version, const std::string& revision);

// A throwaway CA and a server certificate for `name` and 127.0.0.1, written as PEM files
// ca.pem, server.pem and server.key in `dir` (EC P-256, valid for a day). The reason on failure.
std::string make_demo_pki(const std::string& dir, const std::string& name);

}  // namespace wk::cli
