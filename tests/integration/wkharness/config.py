"""Config text writers."""

from __future__ import annotations

import json
import re

from .common import DOMAINS, free_port


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str) and re.fullmatch(r"[0-9]+(ms|s|m|h|KiB|MiB|GiB|B|)", v):
        return v
    return json.dumps(v)  # a JSON string is a valid YAML double-quoted scalar


def _yaml_flow(d: dict):
    return "{" + ", ".join(f"{k}: {_yaml_scalar(v)}" for k, v in d.items()) + "}"


DEFAULT_TIMEOUTS = {"connect": "2s", "header_read": "5s", "idle": "30s",
                    "upstream_response": "5s", "upstream_idle": "4s"}

# A stopping wkproxy keeps an idle keep-alive connection until its next request or until
# shutdown.drain_timeout (30 s by default): a test that stops the proxy while holding one would
# wait that long. Tests get 3 s, unless their `extra` has a shutdown: section of its own.
DEFAULT_SHUTDOWN = {"drain_timeout": "3s"}


def make_config(origin, cloudfront, *, domains=DOMAINS, listen=("127.0.0.1:0",), timeouts=None,
                limits=None, headers=None, workers=2, access_log="stdout", extra="") -> str:
    """YAML text of a wkproxy config. cloudfront: a URL string or a dict with url, sni,
    ca_file, verify. timeouts are merged over DEFAULT_TIMEOUTS; None values drop a key."""
    lines = ["version: 1",
             "listen: [" + ", ".join(json.dumps(x) for x in listen) + "]",
             f"origin: {_yaml_scalar(origin)}"]
    if isinstance(cloudfront, dict):
        lines.append("cloudfront:")
        lines += [f"  {k}: {_yaml_scalar(v)}" for k, v in cloudfront.items()]
    else:
        lines.append(f"cloudfront: {_yaml_scalar(cloudfront)}")
    lines.append("domains: [" + ", ".join(json.dumps(d) for d in domains) + "]")
    t = {k: v for k, v in {**DEFAULT_TIMEOUTS, **(timeouts or {})}.items() if v is not None}
    if t:
        lines.append(f"timeouts: {_yaml_flow(t)}")
    if limits:
        lines.append(f"limits: {_yaml_flow(limits)}")
    if headers:
        lines.append(f"headers: {_yaml_flow(headers)}")
    if workers is not None:
        lines.append(f"workers: {workers}")
    if access_log is not None:
        lines.append(f"access_log: {access_log}")
    if not re.search(r"^shutdown:", extra or "", re.M):
        lines.append(f"shutdown: {_yaml_flow(DEFAULT_SHUTDOWN)}")
    if extra:
        lines.append(extra.rstrip("\n"))
    return "\n".join(lines) + "\n"


def admin_config(port: int | None = None) -> str:
    """The `admin:` line of a config (for make_config's `extra`) on 127.0.0.1 at a fixed port, a
    free one by default. Fixed rather than 0 on purpose: a process that binds the admin port
    again instead of taking the socket over fails with "Address already in use", as in
    production."""
    return f'admin: {{listen: "127.0.0.1:{port or free_port()}"}}'
