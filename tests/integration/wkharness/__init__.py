"""Integration-test harness for wkproxy (Python standard library only).

Pieces, by module:
  common     constants (LOOPBACK, TENANT, DOMAINS, CF_SNI, ...), free_port, wait_until, and
             missing / have_tool for a missing piece of the machine
  payload    deterministic payloads and their hashes
  tls        TestCA: a throw-away CA (and a second, unrelated one) made with the openssl CLI
  wire       SocketReader, strict HTTP/1.1 head parsing and framing, the PROXY header reader
  backends   RecordingBackend: a threaded HTTP/1.1 server over raw sockets (optionally TLS)
             that records every request exactly as it arrived; RawRecordingBackend,
             ValidationBackend, LightOrigin and FaultOrigin (resets, trickles) built on the
             same idea
  clients    RawClient / curl: raw sockets for exact framing, curl where a real client fits;
             exchange_raw, admin_get, metric_value
  config     make_config / admin_config: config text
  process    Proxy: the real wkproxy binary on loopback port 0, with its access log and RSS;
             run_check, run_wkproxy_check
  testcase   ProxyTestCase: a unittest base class wiring the above together with cleanups
  aws        StubAWS: the AWS stand-in (tests/tools/stub_aws.py: CloudFront, STS, IMDSv2 and
             container credentials over HTTPS, signatures checked with botocore) as a process,
             its control API, and env() to point wkproxy at it

Tests import everything from the package itself (`from wkharness import Proxy`).

A test never skips because wkproxy lacks what it tests: it fails. Only a missing piece of the
machine (a tool, IPv6, a resource limit) may skip a test, through `missing()` / `have_tool()`,
and under CI (CI=true) even that fails.

Everything binds 127.0.0.1 (or ::1) on port 0, and everything started is stopped again by
cleanups even when a test fails. Readiness is polled with a deadline, never slept for.
"""

from .aws import StubAWS
from .backends import (ACM_ACCOUNT, FaultOrigin, LightOrigin, RawRecordingBackend, RecordedRequest,
                       RecordingBackend, ValidationBackend)
from .clients import (CurlResult, RawClient, RawExchange, Response, admin_get, build_request,
                      chunked_body, curl, exchange_raw, metric_value, request, send_raw)
from .common import (CF_SNI, DOMAINS, LOOPBACK, TENANT, VALIDATION_PREFIX, available,
                     free_port, have_tool, in_ci, ipv6_available, missing, wait_until)
from .config import DEFAULT_TIMEOUTS, admin_config, make_config
from .payload import pattern_bytes, pattern_chunks, pattern_sha256
from .process import Proxy, pid_alive, read_pid, run_check, run_wkproxy_check, wkproxy_bin
from .testcase import ProxyTestCase
from .tls import TestCA
from .wire import (PROXY_V2_SIGNATURE, Headers, PeerClosed, ProtocolError, SocketReader,
                   _parse_head, read_proxy_header)

__all__ = [
    "ACM_ACCOUNT", "CF_SNI", "DEFAULT_TIMEOUTS", "DOMAINS", "LOOPBACK", "PROXY_V2_SIGNATURE",
    "TENANT", "VALIDATION_PREFIX", "CurlResult", "FaultOrigin", "Headers", "LightOrigin", "PeerClosed",
    "ProtocolError", "Proxy", "ProxyTestCase", "pid_alive", "read_pid", "RawClient", "RawExchange", "RawRecordingBackend",
    "RecordedRequest", "RecordingBackend", "Response", "SocketReader", "StubAWS", "TestCA",
    "ValidationBackend", "_parse_head", "admin_config", "admin_get", "available", "build_request",
    "chunked_body", "curl", "exchange_raw", "free_port", "have_tool", "in_ci", "ipv6_available",
    "make_config", "metric_value", "missing", "pattern_bytes", "pattern_chunks",
    "pattern_sha256", "read_proxy_header", "request", "run_check", "run_wkproxy_check", "send_raw", "wait_until", "wkproxy_bin",
]
