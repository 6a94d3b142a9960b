"""Zero downtime for a client that never retries (issue 20): wrk, with 16 keep-alive connections
and 4 that send `Connection: close` (a new connection per request), runs against the real binary
(admin listener on, as deployed) through 20 reloads (SIGHUP, two configs alternating) and 3
binary upgrades (SIGUSR2 to whichever process serves at that moment), and must see no socket
error (connect, read = a connection closed without an answer, write, timeout) and no error
status. wrk counts a request sent on a keep-alive connection that the server then closes as a
read error, so any idle connection closed by a reload or an upgrade shows up here, where
`wkproxy loadtest` (test_zero_downtime.py) would resend it.

Nothing waits for a fixed time: each event waits until the previous one took effect (a
'reloaded' log line, the new process's pid in the ports file and the old one gone) and until
the origin has answered more requests through the proxy since; then wrk is stopped with SIGINT
(it prints its report as at the end of -d). So the test holds under ASan, only slower."""

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

from wkharness import (read_pid, pid_alive, LightOrigin, ProxyTestCase, admin_config, have_tool, make_config,
                       missing, wait_until)

# The cloudfront upstream is never used here (no validation requests): a port nothing listens on.
UNUSED_CF = "http://127.0.0.1:9"
RELOADS, UPGRADES = 20, 3
KEEPALIVE, FRESH = 16, 4

# wrk's counters as one line from its done() hook; the text report is checked against it.
WRK_LUA = r'''
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d, ' ..
    '"status": %d}\n', summary.requests, e.connect, e.read, e.write, e.timeout, e.status))
end
'''


def parse_wrk(out: str) -> dict:
    m = re.search(r"^WRK_JSON (\{.*\})$", out, re.M)
    if not m:
        raise AssertionError(f"wrk printed no summary:\n{out}")
    r = json.loads(m.group(1))
    text = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        text.update(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        text["status"] = int(m.group(1))
    for k, v in text.items():
        if v != r[k]:
            raise AssertionError(f"wrk's text report and done() disagree on {k}:\n{out}")
    return r






class ZeroDowntimeWrkTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls):
        # No TLS here: skip the test CA the base class makes.
        super(ProxyTestCase, cls).setUpClass()

    def test_wrk_sees_no_failure_through_reloads_and_upgrades(self):
        if not have_tool("wrk"):
            missing("wrk is not installed (tools/deps.sh installs it)")
        origin = LightOrigin().start()
        self.addCleanup(origin.stop)
        admin = admin_config()
        configs = [make_config(origin.url, UNUSED_CF, access_log="off", extra=admin),
                   make_config(origin.url, UNUSED_CF, access_log="off", extra=admin,
                               timeouts={"idle": "10s", "upstream_idle": "2s"})]
        proxy = self.start_proxy(origin.url, UNUSED_CF, access_log="off", extra=admin)
        pids = [proxy.pid]

        def stop_successors():
            # The upgraded processes are not our children: SIGTERM by pid, wait until gone.
            for pid in pids[1:]:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not any(pid_alive(p) for p in pids[1:]), 60,
                       what=f"the upgraded wkproxy to stop; stderr:\n{proxy.stderr()[-2000:]}")

        self.addCleanup(stop_successors)
        d = tempfile.mkdtemp(prefix="wkproxy-zdt-wrk-")
        self.addCleanup(shutil.rmtree, d, True)
        paths = []
        for i, text in enumerate(configs):
            paths.append(os.path.join(d, f"config-{i}.yaml"))
            with open(paths[-1], "w") as f:
                f.write(text)
        lua = os.path.join(d, "summary.lua")
        with open(lua, "w") as f:
            f.write(WRK_LUA)

        # -d is only a cap: wrk is stopped with SIGINT once every event has happened.
        url = f"http://127.0.0.1:{proxy.port}/"
        common = ["wrk", "-t1", "-d", "600s", "--timeout", "60s", "-s", lua, "-H",
                  "Host: tenant.example"]
        wrks = [subprocess.Popen([*common, f"-c{KEEPALIVE}", url], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL),
                subprocess.Popen([*common, f"-c{FRESH}", "-H", "Connection: close", url],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 stdin=subprocess.DEVNULL)]
        for w in wrks:
            self.addCleanup(lambda w=w: w.poll() is None and w.kill())

        def load_flows(n=200):
            """Wait until the origin has answered n more requests through the proxy."""
            base = origin.requests
            wait_until(lambda: origin.requests >= base + n or any(w.poll() is not None
                                                                  for w in wrks), 120,
                       what=f"{n} more requests through the proxy")
            self.assertTrue(all(w.poll() is None for w in wrks), "wrk exited early")

        events = ["reload"] * RELOADS
        for k in range(UPGRADES):  # spread the upgrades among the reloads
            events.insert((k + 1) * (RELOADS + UPGRADES) // (UPGRADES + 1), "upgrade")
        reloads = 0
        load_flows()
        for kind in events:
            if kind == "reload":
                reloads += 1
                shutil.copyfile(paths[reloads % 2], proxy.config_path)
                os.kill(read_pid(proxy), signal.SIGHUP)
                wait_until(lambda: proxy.stderr().count("info reloaded ") >= reloads, 60,
                           what=f"reload {reloads} logged; stderr:\n{proxy.stderr()[-2000:]}")
            else:
                old = read_pid(proxy)
                os.kill(old, signal.SIGUSR2)
                wait_until(lambda: read_pid(proxy) != old, 60,
                           what=f"the process after pid {old}; stderr:\n"
                                f"{proxy.stderr()[-2000:]}")
                pids.append(read_pid(proxy))
                # (a zombie counts as gone: the first one is the harness's child)
                wait_until(lambda: not pid_alive(old), 60,
                           what=f"the old process {old} to exit; stderr:\n"
                                f"{proxy.stderr()[-2000:]}")
            load_flows()

        for w in wrks:
            w.send_signal(signal.SIGINT)
        outs = [w.communicate(timeout=60)[0] for w in wrks]
        results = [parse_wrk(o) for o in outs]
        for name, r, out in zip(("keep-alive", "Connection: close"), results, outs):
            with self.subTest(name):
                self.assertGreater(r["requests"], 100, out)
                failed = {k: r[k] for k in ("connect", "read", "write", "timeout", "status")
                          if r[k]}
                self.assertEqual(failed, {}, f"wrk ({name}) saw failures:\n{out}\nwkproxy "
                                             f"stderr:\n{proxy.stderr()[-4000:]}")

        # Every reload and upgrade happened, and the last process serves.
        self.assertEqual(proxy.stderr().count("info reloaded "), RELOADS, proxy.stderr())
        self.assertEqual(len(set(pids)), UPGRADES + 1, pids)
        self.assertEqual(read_pid(proxy), pids[-1])
        self.assertEqual([p for p in pids if pid_alive(p)], [pids[-1]])
        self.assertEqual(proxy.proc.wait(timeout=30), 0, proxy.stderr()[-2000:])
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
        self.addCleanup(conn.close)
        conn.request("GET", "/", headers={"Host": "tenant.example"})
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read()), (200, LightOrigin.BODY))
        conn.close()
        stop_successors()
        self.assertNotIn("Sanitizer", proxy.stderr())


if __name__ == "__main__":
    unittest.main()
