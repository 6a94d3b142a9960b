#pragma once
// The process: load and validate the config, open listeners, start workers, then run the
// main thread's loop (signals, DNS refresh, reload, graceful stop, binary upgrade).

#include <string>
#include <vector>

namespace wk::app {

struct server_options {
  std::string config_path;
  std::string ports_file;         // written once every listener is bound:
                                  // {"listen": ["ip:port", ...], "admin": "ip:port", "pid": N}
  std::string pid_file;           // --pid-file: overrides the config's pid_file
  std::string exe;                // this binary (SIGUSR2 starts it again: an upgraded file)
  std::vector<std::string> args;  // the command line, argv[0] included
  std::string version;            // for metrics and the status page
  std::string revision;           // the source revision it was built from
};

// Runs until stopped by SIGTERM/SIGINT. Returns the process exit code: 0 after a clean stop,
// 1 when the config is invalid or a listener cannot be opened (before anything is served).
int run_server(const server_options& opt);

}  // namespace wk::app
