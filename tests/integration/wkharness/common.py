"""Constants shared by every piece, small helpers for ports and polling, and the rule for a
missing piece of the machine (skip by hand, fail under CI)."""

from __future__ import annotations

import os
import shutil
import socket
import time
import unittest


LOOPBACK = "127.0.0.1"
TENANT = "tenant.example"
DOMAINS = ("tenant.example", "www.tenant.example")
CF_SNI = "cloudfront.test"
VALIDATION_PREFIX = "/.well-known/pki-validation/"


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (bound then released): an 'upstream down' address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def wait_until(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll predicate() until it returns a truthy value or the deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------------
# A missing piece of the machine (a tool, IPv6, a resource limit) -- never of wkproxy itself: what
# wkproxy should do is asserted, so a test of a missing feature fails. By hand, such a test is
# skipped; under CI (CI=true: .ci/run), where tools/deps.sh installs every tool the suite uses, a
# skip would make a test vanish unnoticed, so it fails instead.


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(reason: str):
    """Skip the running test (unittest.SkipTest) because of `reason`; under CI, fail it."""
    if in_ci():
        raise AssertionError(f"{reason} (CI=true: tools/deps.sh provides it, so this is a "
                             "failure, not a skip)")
    raise unittest.SkipTest(reason)


def available(ok: bool, what: str) -> bool:
    """`ok`, for a check that only adds to a test when the machine has `what`; under CI a
    missing `what` fails the test instead of quietly checking less."""
    if not ok and in_ci():
        raise AssertionError(f"{what} is not available (CI=true: tools/deps.sh provides it)")
    return ok


def have_tool(name: str) -> bool:
    """Whether the command `name` is installed (under CI: it must be)."""
    return available(shutil.which(name) is not None, f"the command {name!r}")
