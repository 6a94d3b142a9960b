"""The wkproxy binary as a process: the path under test, a running proxy with its logs, and
one-shot runs of `wkproxy -t` and `wkproxy check`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from .common import wait_until

_INTEGRATION_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wkproxy_bin() -> str:
    """Path of the binary under test: $WKPROXY_BIN, else the dev build of this tree."""
    path = os.environ.get("WKPROXY_BIN") or os.path.join(_INTEGRATION_DIR, "..", "..", "build",
                                                         "dev", "wkproxy")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"wkproxy binary not found or not executable: {path} "
                           "(set WKPROXY_BIN)")
    return path


def _parse_addr(a: str):
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:]+):(\d+)", a)
    if not m:
        raise AssertionError(f"bad address in ports file: {a!r}")
    return (m.group(1), int(m.group(2))) if m.group(1) else (m.group(3), int(m.group(4)))


class Proxy:
    """The wkproxy binary running on a config, in the foreground, with its logs captured.

    Proxy(config_text).start() waits (with a deadline) for the ports file. .port is the first
    listener's port, .addresses all of them as (host, port). .stop() sends SIGTERM and checks
    the exit code. Usable as a context manager.

    prefix: a command that runs wkproxy by exec'ing its arguments (`prlimit --nofile=N:N --`,
    `unshare -m sh -c '...; exec "$@"' sh`), so .pid is still wkproxy's own."""

    def __init__(self, config_text: str, *, args=(), env=None, ready_timeout=15.0, prefix=()):
        self.config_text = config_text
        self.args = list(args)
        self.prefix = list(prefix)
        self.env = env
        self.ready_timeout = ready_timeout
        self.dir = tempfile.mkdtemp(prefix="wkproxy-test-")
        self.config_path = os.path.join(self.dir, "wkproxy.yaml")
        self.ports_file = os.path.join(self.dir, "ports.json")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.proc = None
        self.returncode = None
        self.addresses = []
        self.port = None
        self.admin_address = None  # (host, port) of the admin listener, when configured
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._log: list[dict] = []
        self._bad_log_lines: list[str] = []
        self._lock = threading.Lock()
        self._readers = []

    def _pump(self, stream, sink, parse):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                sink.append(line)
                if parse and line.strip():
                    try:
                        obj = json.loads(line)
                        if isinstance(obj, dict):
                            self._log.append(obj)
                        else:
                            self._bad_log_lines.append(line)
                    except ValueError:
                        self._bad_log_lines.append(line)
        stream.close()

    def start(self):
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen(
            [*self.prefix, wkproxy_bin(), "-c", self.config_path, "--ports-file", self.ports_file,
             *self.args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        for stream, sink, parse in ((self.proc.stdout, self._stdout, True),
                                    (self.proc.stderr, self._stderr, False)):
            t = threading.Thread(target=self._pump, args=(stream, sink, parse), daemon=True)
            t.start()
            self._readers.append(t)
        deadline = time.monotonic() + self.ready_timeout
        try:
            while True:
                data = self._read_ports_file()
                if data is not None:
                    break
                if self.proc.poll() is not None:
                    self._join_readers()
                    raise AssertionError(f"wkproxy exited with {self.proc.returncode} before it "
                                         f"was ready; stderr:\n{self.stderr()}")
                if time.monotonic() >= deadline:
                    raise AssertionError(f"wkproxy did not write {self.ports_file} within "
                                         f"{self.ready_timeout}s; stderr:\n{self.stderr()}")
                time.sleep(0.02)
            listen = data.get("listen") if isinstance(data, dict) else None
            if not isinstance(listen, list) or not listen:
                raise AssertionError(f"ports file has no 'listen' list: {data!r}")
            self.addresses = [_parse_addr(a) for a in listen]
            self.port = self.addresses[0][1]
            admin = data.get("admin")
            self.admin_address = _parse_addr(admin) if admin else None
        except BaseException:
            self.stop(expect_exit=None)
            raise
        return self

    def _read_ports_file(self):
        try:
            with open(self.ports_file) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        # The file is written atomically, so a complete JSON document is expected at once; a
        # partial one is reported by the deadline above rather than accepted.
        try:
            return json.loads(text)
        except ValueError:
            return None

    @property
    def pid(self):
        return self.proc.pid

    def url(self, path="/", index=0):
        host, port = self.addresses[index]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}{path}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- observations
    def access_log(self) -> list[dict]:
        with self._lock:
            return list(self._log)

    def wait_for_log(self, n, timeout=10.0) -> list[dict]:
        """Wait until at least n access-log lines have arrived; return them all."""
        return wait_until(lambda: len(self.access_log()) >= n and self.access_log(), timeout,
                          what=f"{n} access-log line(s); have {len(self.access_log())}, "
                               f"stdout tail {self.stdout()[-500:]!r}")

    def bad_log_lines(self) -> list[str]:
        with self._lock:
            return list(self._bad_log_lines)

    def stdout(self) -> str:
        with self._lock:
            return "\n".join(self._stdout)

    def stderr(self) -> str:
        with self._lock:
            return "\n".join(self._stderr)

    def _status_field(self, key) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"{key} not in /proc/{self.proc.pid}/status")

    def rss_kb(self) -> int:
        return self._status_field("VmRSS")

    def peak_rss_kb(self) -> int:
        return self._status_field("VmHWM")

    # -- lifecycle
    def _join_readers(self):
        for t in self._readers:
            t.join(timeout=5)

    def stop(self, expect_exit=0, timeout=15.0):
        """SIGTERM, wait, and (unless expect_exit is None) assert the exit code. Always leaves
        the process dead and the temp dir removed."""
        problem = None
        try:
            if self.proc is not None and self.returncode is None:
                if self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGTERM)
                    try:
                        self.proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait(timeout=10)
                        problem = f"wkproxy did not exit within {timeout}s of SIGTERM (killed)"
                self.returncode = self.proc.returncode
                self._join_readers()
                if problem is None and expect_exit is not None and self.returncode != expect_exit:
                    problem = (f"wkproxy exited with {self.returncode}, expected {expect_exit}; "
                               f"stderr:\n{self.stderr()[-3000:]}")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
        if problem and expect_exit is not None:
            raise AssertionError(problem)
        return self.returncode

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop(expect_exit=0 if exc_type is None else None)


def run_check(config_text: str, *, env=None, name="wkproxy.yaml", timeout=30):
    """`wkproxy -t -c FILE` on the given text; returns (CompletedProcess, path). The temp dir is
    removed afterwards, so use path only in messages."""
    d = tempfile.mkdtemp(prefix="wkproxy-check-")
    try:
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(config_text)
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.run([wkproxy_bin(), "-t", "-c", path], capture_output=True, text=True,
                           timeout=timeout, env=e)
        return p, path
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_wkproxy_check(*args, timeout=120) -> subprocess.CompletedProcess:
    """`wkproxy check ARGS...`; returns the CompletedProcess (text stdout/stderr)."""
    return subprocess.run([wkproxy_bin(), "check", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def read_pid(proxy) -> int:
    """The pid in a proxy's ports file: the process serving now (it changes at each upgrade)."""
    import json
    with open(proxy.ports_file) as f:
        return json.load(f)["pid"]
