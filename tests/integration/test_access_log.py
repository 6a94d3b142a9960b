"""Access-log formats and destinations, reopening on SIGUSR1 (logrotate), and log_level, through
the real binary: combined lines as log tools read them, a file renamed away while requests keep
coming (nothing lost, nothing split), the validation event log reopened too, reloads that
change the access log, and diagnostic messages filtered by level."""

import datetime
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import unittest

from wkharness import (LOOPBACK, RawClient, ProxyTestCase, build_request, free_port, make_config,
                       request, run_check, wait_until)

PREFIX = "/.well-known/pki-validation/"

# One quoted field of the combined format: printable ASCII but '"' and '\', or an \xHH escape.
_QUOTED = r'"((?:[^"\\\x00-\x1f\x7f-\xff]|\\x[0-9A-F]{2})*)"'
COMBINED = re.compile(
    r"(?P<ip>[0-9a-f.:]+) - - "
    r"\[(?P<time>\d{2}/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2}"
    r" \+0000)\] "
    + _QUOTED.replace("((", "(?P<request>(", 1) +
    r" (?P<status>\d{1,3}) (?P<bytes>[1-9]\d*|-) "
    + _QUOTED.replace("((", "(?P<referer>(", 1) + " "
    + _QUOTED.replace("((", "(?P<agent>(", 1) + r"\Z")


def read_lines(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return data.decode("latin-1").splitlines(keepends=True)


class AccessLogCase(ProxyTestCase):
    def setUp(self):
        # Made before any proxy starts: cleanups run in reverse, so the proxy stops first.
        self.tmp = tempfile.mkdtemp(prefix="wk-access-log-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.log_path = os.path.join(self.tmp, "access.log")

    def wait_lines(self, path, n, timeout=5):
        """At least n whole lines in path (the workers flush every 250 ms)."""
        wait_until(lambda: len(read_lines(path)) >= n, timeout,
                   what=f"{n} line(s) in {path}; have {read_lines(path)[-3:]!r}")
        lines = read_lines(path)
        self.assertTrue(all(line.endswith("\n") for line in lines), lines)
        return lines


class CombinedFormatTest(AccessLogCase):
    def test_combined_lines_match_the_format_and_carry_referer_and_user_agent(self):
        dead = free_port()
        passthrough = {"address": "127.0.0.1:0", "mode": "passthrough",
                       "upstream": f"127.0.0.1:{dead}"}
        origin, cf, proxy = self.start_all(
            listen=("127.0.0.1:0", passthrough), workers=1,  # one worker: lines in order
            access_log=f'{{output: "{self.log_path}", format: combined}}')
        r = request(proxy.port, "GET", "/page?q=1",
                    headers=[("Referer", "https://tenant.example/start"),
                             ("User-Agent", "Mozilla/5.0 (X11) test-agent/1.0")])
        self.assertEqual(r.status, 200, r)
        body_len = len(r.body)
        r = request(proxy.port, "HEAD", "/head", headers=[("User-Agent", 'quote"back\\slash')])
        self.assertEqual(r.status, 200, r)
        with RawClient(proxy.port) as c:  # a request line that never parses: 400, "- - -"
            c.send(b"GET /\x01bad HTTP/1.1\r\nHost: tenant.example\r\n\r\n")
            self.assertEqual(c.read_response().status, 400)
        with RawClient(proxy.addresses[1][1]) as c:  # plain HTTP on the passthrough listener
            c.send(build_request("GET", "/"))
            self.assertTrue(c.closed_by_peer(timeout=5))

        lines = self.wait_lines(self.log_path, 4)
        self.assertEqual(len(lines), 4, lines)
        fields = []
        now = datetime.datetime.now(datetime.timezone.utc)
        for line in lines:
            m = COMBINED.match(line.rstrip("\n"))
            self.assertIsNotNone(m, f"not a combined line: {line!r}")
            when = datetime.datetime.strptime(m["time"], "%d/%b/%Y:%H:%M:%S %z")
            self.assertLess(abs((now - when).total_seconds()), 120, line)
            self.assertEqual(m["ip"], LOOPBACK)
            fields.append((m["request"], m["status"], m["bytes"], m["referer"], m["agent"]))
        self.assertEqual(fields, [
            ("GET /page?q=1 HTTP/1.1", "200", str(body_len), "https://tenant.example/start",
             "Mozilla/5.0 (X11) test-agent/1.0"),
            ("HEAD /head HTTP/1.1", "200", "-", "-", r"quote\x22back\x5Cslash"),
            ("- - -", "400", "-", "-", "-"),
            ("- - -", "0", "-", "-", "-"),
        ])
        self.assertEqual(proxy.stdout(), "", "the access log went to the file, not stdout")

    def test_json_lines_have_referer_and_user_agent(self):
        origin, cf, proxy = self.start_all()  # access_log: stdout, format json
        request(proxy.port, "GET", "/j", headers=[("Referer", "https://r.example/"),
                                                  ("User-Agent", "ua/2")])
        request(proxy.port, "GET", "/k")
        log = proxy.wait_for_log(2)
        self.assertEqual(sorted((x["target"], x["referer"], x["user_agent"]) for x in log),
                         [("/j", "https://r.example/", "ua/2"), ("/k", "", "")])


class ReopenTest(AccessLogCase):
    def test_rename_and_sigusr1_moves_new_lines_to_a_new_file_losing_none(self):
        events_path = os.path.join(self.tmp, "events.jsonl")
        origin, cf, proxy = self.start_all(
            access_log=f'"{self.log_path}"',
            extra=f"validation:\n  event_log: {json.dumps(events_path)}\n")
        request(proxy.port, "GET", PREFIX + "before.txt")
        self.wait_lines(events_path, 1)

        # One keep-alive connection sending requests back to back the whole time: its lines
        # come from one worker, in order.
        stop = threading.Event()
        sent = []
        failures = []

        def traffic():
            try:
                with RawClient(proxy.port) as c:
                    i = 0
                    while not stop.is_set():
                        r = c.request("GET", f"/seq/{i}")
                        if r.status != 200:
                            failures.append(r)
                            return
                        sent.append(i)
                        i += 1
            except Exception as e:  # reported below; a thread cannot fail the test itself
                failures.append(e)

        t = threading.Thread(target=traffic, daemon=True)
        t.start()
        self.addCleanup(t.join, 10)
        self.addCleanup(stop.set)
        wait_until(lambda: len(read_lines(self.log_path)) >= 50, 10, what="50 lines before")
        rotated = self.log_path + ".1"
        rotated_events = events_path + ".1"
        os.rename(self.log_path, rotated)
        os.rename(events_path, rotated_events)
        os.kill(proxy.pid, signal.SIGUSR1)
        wait_until(lambda: "reopened access log" in proxy.stderr()
                   and "reopened validation event log" in proxy.stderr(), 5,
                   what=f"the reopen messages; stderr: {proxy.stderr()[-2000:]}")
        wait_until(lambda: len(read_lines(self.log_path)) >= 50, 10, what="50 lines after")
        stop.set()
        t.join(10)
        self.assertEqual(failures, [])
        request(proxy.port, "GET", PREFIX + "after.txt")
        self.wait_lines(events_path, 1)
        proxy.stop()  # the workers flush what they hold

        old = [json.loads(line) for line in read_lines(rotated)]
        new = [json.loads(line) for line in read_lines(self.log_path)]  # whole JSON lines only
        seq = lambda lines: [int(x["target"].rsplit("/", 1)[1]) for x in lines
                             if x["target"].startswith("/seq/")]
        old_seq, new_seq = seq(old), seq(new)
        self.assertTrue(old_seq and new_seq)
        self.assertEqual(old_seq + new_seq, sent, "every request logged once, in order")
        self.assertIn(PREFIX + "before.txt", [x["target"] for x in old])
        self.assertIn(PREFIX + "after.txt", [x["target"] for x in new])
        self.assertEqual([e["file"] for e in map(json.loads, read_lines(rotated_events))],
                         ["before.txt"])
        self.assertEqual([e["file"] for e in map(json.loads, read_lines(events_path))],
                         ["after.txt"])
        # The new file is created like the first one.
        self.assertEqual(os.stat(self.log_path).st_mode & 0o777, 0o640 & ~current_umask())

    def test_a_reopen_that_fails_keeps_the_old_file(self):
        logs = os.path.join(self.tmp, "logs")
        os.mkdir(logs)
        path = os.path.join(logs, "access.log")
        origin, cf, proxy = self.start_all(access_log=json.dumps(path))
        request(proxy.port, "GET", "/one")
        self.wait_lines(path, 1)
        moved = os.path.join(self.tmp, "logs-moved")
        os.rename(logs, moved)  # the configured directory is gone: the reopen cannot succeed
        os.kill(proxy.pid, signal.SIGUSR1)
        wait_until(lambda: "SIGUSR1: access log: cannot open" in proxy.stderr(), 5,
                   what=f"the reopen error; stderr: {proxy.stderr()[-2000:]}")
        self.assertEqual(request(proxy.port, "GET", "/two").status, 200)
        lines = self.wait_lines(os.path.join(moved, "access.log"), 2)
        self.assertEqual([json.loads(x)["target"] for x in lines], ["/one", "/two"])
        self.assertFalse(os.path.exists(path))

    def test_reload_switches_file_and_format(self):
        origin, cf, proxy = self.start_all(access_log=json.dumps(self.log_path))
        request(proxy.port, "GET", "/json")
        self.wait_lines(self.log_path, 1)
        second = os.path.join(self.tmp, "second.log")
        cloudfront = self.cloudfront_upstream(cf)
        with open(proxy.config_path, "w") as f:
            f.write(make_config(origin.url, cloudfront,
                                access_log=f'{{output: "{second}", format: combined}}'))
        os.kill(proxy.pid, signal.SIGHUP)
        wait_until(lambda: "reloaded" in proxy.stderr(), 5, what="the reload")
        request(proxy.port, "GET", "/combined")
        lines = self.wait_lines(second, 1)
        self.assertRegex(lines[0], r'"GET /combined HTTP/1.1" 200 ')
        self.assertIsNotNone(COMBINED.match(lines[0].rstrip("\n")), lines[0])
        self.assertEqual([json.loads(x)["target"] for x in read_lines(self.log_path)], ["/json"])
        # Back to stdout in JSON: the file is left alone.
        with open(proxy.config_path, "w") as f:
            f.write(make_config(origin.url, cloudfront))
        os.kill(proxy.pid, signal.SIGHUP)
        wait_until(lambda: proxy.stderr().count("reloaded") >= 2, 5, what="the second reload")
        request(proxy.port, "GET", "/stdout")
        self.assertEqual(proxy.wait_for_log(1)[-1]["target"], "/stdout")
        self.assertEqual(len(read_lines(second)), 1)


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


class LogLevelTest(AccessLogCase):
    def test_warn_hides_info_lines(self):
        origin, cf, proxy = self.start_all(extra="log_level: warn")
        self.assertEqual(request(proxy.port, "GET", "/").status, 200)
        proxy.stop()
        self.assertNotIn(" info ", proxy.stderr())
        self.assertNotIn("listening on", proxy.stderr())

    def test_info_is_the_default(self):
        origin, cf, proxy = self.start_all()
        request(proxy.port, "GET", "/")
        proxy.stop()
        self.assertIn(" info listening on", proxy.stderr())
        self.assertNotIn(" debug ", proxy.stderr())

    def test_debug_shows_upstream_connections(self):
        origin, cf, proxy = self.start_all(extra="log_level: debug")
        self.assertEqual(request(proxy.port, "GET", "/").status, 200)
        wait_until(lambda: " debug upstream: connected to origin 127.0.0.1:" in proxy.stderr(), 5,
                   what=f"a debug line; stderr: {proxy.stderr()[-2000:]}")
        self.assertIn(" debug config ", proxy.stderr())

    def test_reload_applies_the_level(self):
        origin, cf, proxy = self.start_all()
        with open(proxy.config_path, "w") as f:
            f.write(make_config(origin.url, self.cloudfront_upstream(cf),
                                extra="log_level: debug"))
        os.kill(proxy.pid, signal.SIGHUP)
        wait_until(lambda: "reloaded" in proxy.stderr(), 5, what="the reload")
        request(proxy.port, "GET", "/")
        wait_until(lambda: " debug upstream: connected to origin" in proxy.stderr(), 5,
                   what=f"a debug line after the reload; stderr: {proxy.stderr()[-2000:]}")
        self.assertIn(" debug reload: ", proxy.stderr())


class CheckTest(ProxyTestCase):
    def check_fails_at(self, access_log, reason):
        text = make_config("http://127.0.0.1:9", "http://127.0.0.1:9", access_log=access_log)
        line = text.splitlines().index(f"access_log: {access_log}") + 1
        p, path = run_check(text)
        self.assertEqual(p.returncode, 1, p)
        self.assertRegex(p.stderr, re.escape(f"{path}:{line}:") + r"\d+: " + reason, p.stderr)

    def test_bad_access_log_values_fail_the_check_with_file_and_line(self):
        self.check_fails_at("stdot", re.escape('access_log: expected stdout, stderr, off or a '
                                               'file path'))
        self.check_fails_at("{output: stdout, format: apache}",
                            re.escape('access_log.format: expected json or combined, got '
                                      '"apache"'))
        self.check_fails_at('"/nonexistent-wk-dir/access.log"',
                            re.escape('access_log: no such directory: "/nonexistent-wk-dir"'))

    def test_bad_log_level_fails_the_check(self):
        text = make_config("http://127.0.0.1:9", "http://127.0.0.1:9", extra="log_level: loud")
        line = text.splitlines().index("log_level: loud") + 1
        p, path = run_check(text)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn(f"{path}:{line}:12: log_level: expected debug, info, warn or error", p.stderr)


if __name__ == "__main__":
    unittest.main()
