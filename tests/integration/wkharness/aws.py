"""StubAWS: the AWS stand-in (tests/tools/stub_aws.py) as a process, and its control API.

The stub runs under Debian's /usr/bin/python3 because it checks every signature with botocore
(python3-botocore), which the interpreter running the tests may not have; the tests talk to it
only over HTTPS, with the standard library."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from .common import LOOPBACK, missing

STUB_PYTHON = "/usr/bin/python3"
STUB_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools", "stub_aws.py")

# Exit code of stub_aws.py when botocore does not import.
_NO_BOTOCORE = 3

# The same variables wkproxy reads, blanked unless a mode sets them: a developer's own AWS
# environment must not leak into a test (wkproxy, like the SDKs, treats empty as unset).
_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_ENDPOINT_URL", "AWS_EC2_METADATA_DISABLED", "AWS_REGION", "AWS_DEFAULT_REGION")


class StubAWS:
    """The AWS stand-in on 127.0.0.1:PORT over HTTPS (certificate from the test CA `ca`):
    CloudFront, STS, IMDSv2 and container credentials, every signature checked by botocore.

    StubAWS(ca).start() waits (with a deadline) for the stub's ports file; .stop() sends
    SIGTERM and waits. Usable as a context manager. .url is https://127.0.0.1:PORT; .env()
    the environment that points wkproxy at it. The control methods change what it answers
    and read what it received."""

    __test__ = False

    ACCOUNT = "123456789012"
    DEFAULT_KEY_ID = "AKIDSTUBEXAMPLE"
    DEFAULT_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYSTUBSECRET"
    DEFAULT_ROLE = "arn:aws:iam::123456789012:role/wkproxy-stub"
    _names = itertools.count()

    def __init__(self, ca, *, state: dict | None = None, ready_timeout: float = 15.0):
        self.ca = ca
        self.initial_state = state
        self.ready_timeout = ready_timeout
        self.dir = None
        self.proc = None
        self.port = None
        self.returncode = None
        self._ssl = ssl.create_default_context(cafile=ca.ca_pem)

    # -- lifecycle
    def start(self):
        self.dir = tempfile.mkdtemp(prefix="wkproxy-stub-aws-")
        cert, key = self.ca.issue(f"stub-aws-{next(self._names)}", ("localhost",), (LOOPBACK,))
        ports_file = os.path.join(self.dir, "ports.json")
        cmd = [STUB_PYTHON, STUB_SCRIPT, "--cert", cert, "--key", key, "--ports-file", ports_file]
        if self.initial_state is not None:
            state_file = os.path.join(self.dir, "state.json")
            with open(state_file, "w") as f:
                json.dump(self.initial_state, f)
            cmd += ["--state", state_file]
        if not os.access(STUB_PYTHON, os.X_OK):
            missing(f"{STUB_PYTHON} (Debian's Python, for python3-botocore) is not installed")
        self._log = open(os.path.join(self.dir, "stub.log"), "w+b")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.ready_timeout
        try:
            while True:
                data = self._read_ports_file(ports_file)
                if data is not None:
                    break
                if self.proc.poll() is not None:
                    if self.proc.returncode == _NO_BOTOCORE:
                        missing("python3-botocore is not installed (tools/deps.sh installs it)")
                    raise AssertionError(f"stub_aws exited with {self.proc.returncode} before it "
                                         f"was ready:\n{self.log()}")
                if time.monotonic() >= deadline:
                    raise AssertionError(f"stub_aws did not write its ports file within "
                                         f"{self.ready_timeout}s:\n{self.log()}")
                time.sleep(0.02)
            self.port = data["port"]
        except BaseException:
            self.stop(expect_exit=None)
            raise
        return self

    @staticmethod
    def _read_ports_file(path):
        try:
            with open(path) as f:
                return json.load(f)  # written atomically: complete or absent
        except (FileNotFoundError, ValueError):
            return None

    @property
    def pid(self):
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    def log(self) -> str:
        """What the stub printed (tracebacks of its own bugs, mostly)."""
        if self.dir is None or self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-5000:]

    def stop(self, expect_exit=0, timeout=10.0):
        """SIGTERM by pid, wait, and (unless expect_exit is None) assert the exit code. Always
        leaves the process dead and the temp dir removed."""
        problem = None
        try:
            if self.proc is not None and self.returncode is None:
                if self.proc.poll() is None:
                    os.kill(self.proc.pid, signal.SIGTERM)
                    try:
                        self.proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait(timeout=10)
                        problem = f"stub_aws did not exit within {timeout}s of SIGTERM (killed)"
                self.returncode = self.proc.returncode
                if problem is None and expect_exit is not None and self.returncode != expect_exit:
                    problem = f"stub_aws exited with {self.returncode}:\n{self.log()}"
        finally:
            if self.dir is not None:
                self._log.close()
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None
        if problem and expect_exit is not None:
            raise AssertionError(problem)
        return self.returncode

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop(expect_exit=0 if exc_type is None else None)

    # -- pointing wkproxy at it
    def env(self, credentials: str | None = "static", **extra) -> dict:
        """Environment variables for wkproxy: every AWS endpoint at the stub
        (AWS_ENDPOINT_URL_CLOUDFRONT, AWS_ENDPOINT_URL_STS, AWS_EC2_METADATA_SERVICE_ENDPOINT),
        AWS_CA_BUNDLE = the test CA, the shared files at paths that do not exist, and the other
        credential variables blank, so that only the chosen source is found:

          "static"        AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY = the default key
          "session"       new temporary credentials (with AWS_SESSION_TOKEN) from the stub
          "web_identity"  AWS_WEB_IDENTITY_TOKEN_FILE (the stub's expected token) and
                          AWS_ROLE_ARN = DEFAULT_ROLE
          "container"     AWS_CONTAINER_CREDENTIALS_FULL_URI = URL/container-credentials, and
                          AWS_CONTAINER_AUTHORIZATION_TOKEN when the stub expects one
          "imds" / None   nothing more (the chain ends at the stub's instance metadata)

        `extra` variables are added last, verbatim."""
        env = dict.fromkeys(_CREDENTIAL_VARIABLES, "")
        env.update({
            "AWS_ENDPOINT_URL_CLOUDFRONT": self.url,
            "AWS_ENDPOINT_URL_STS": self.url,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.url,
            "AWS_CA_BUNDLE": self.ca.ca_pem,
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(self.dir, "no-such-credentials"),
            "AWS_CONFIG_FILE": os.path.join(self.dir, "no-such-config"),
        })
        if credentials == "static":
            env.update(AWS_ACCESS_KEY_ID=self.DEFAULT_KEY_ID,
                       AWS_SECRET_ACCESS_KEY=self.DEFAULT_SECRET)
        elif credentials == "session":
            c = self.issue_credentials()
            env.update(AWS_ACCESS_KEY_ID=c["access_key_id"], AWS_SECRET_ACCESS_KEY=c["secret"],
                       AWS_SESSION_TOKEN=c["token"])
        elif credentials == "web_identity":
            path = os.path.join(self.dir, "web-identity-token")
            with open(path, "w") as f:
                f.write((self.state()["web_identity_token"] or "") + "\n")
            env.update(AWS_WEB_IDENTITY_TOKEN_FILE=path, AWS_ROLE_ARN=self.DEFAULT_ROLE)
        elif credentials == "container":
            env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = self.url + "/container-credentials"
            env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = self.state()["container_token"] or ""
        elif credentials not in ("imds", None):
            raise ValueError(f"credentials={credentials!r}: static, session, web_identity, "
                             "container, imds or None")
        env.update(extra)
        return env

    # -- control API (JSON over HTTPS, never signed)
    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + "/_stub/" + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"stub_aws {method} /_stub/{path}: {e.code} "
                                 f"{e.read().decode('utf-8', 'replace')}") from None

    def state(self) -> dict:
        return self._call("GET", "state")

    def set_state(self, **fields) -> dict:
        """Merge into the stub's state: keys={AKID: {"secret", "denied"}}, roles=[ARN, ...],
        external_ids={ARN: id}, web_identity_token, container_token (None: not checked),
        container_role, imds (False: 404 for /latest/...), imds_role, credentials_lifetime
        (seconds; <= 0 issues credentials that are already expired), sts_region."""
        return self._call("POST", "state", fields)

    def add_key(self, key_id: str, secret: str, denied: bool = False) -> dict:
        return self.set_state(keys={key_id: {"secret": secret, "denied": denied}})

    def set_credentials_lifetime(self, seconds: int) -> dict:
        return self.set_state(credentials_lifetime=int(seconds))

    def set_tenant(self, tenant_id: str, **fields) -> dict:
        """Create or update (merge) a tenant; returns it with everything derived filled in:
        name, arn, distribution_id, domains, connection_group (+ _name), routing_endpoint,
        certificate_status (None: no managed certificate), certificate_arn, token_host
        (cloudfront | self-hosted), url_form (bare | scheme), redirect_to_host (None: ACM's),
        tokens {domain: [from_file, to_file]}, dns {domain: status}, domain_status, status,
        enabled."""
        return self._call("POST", "tenant", dict(fields, id=tenant_id))

    def tenant(self, tenant_id: str) -> dict:
        return self._call("GET", "tenant/" + urllib.parse.quote(tenant_id, safe=""))

    def delete_tenant(self, tenant_id: str) -> dict:
        return self._call("DELETE", "tenant/" + urllib.parse.quote(tenant_id, safe=""))

    def document(self, tenant_id: str) -> bytes:
        """The body GetManagedCertificateDetails answers for `tenant_id`, as it would answer it."""
        req = urllib.request.Request(
            self.url + "/_stub/document/managed-certificate/" + urllib.parse.quote(tenant_id, safe=""))
        with urllib.request.urlopen(req, context=self._ssl, timeout=10) as r:
            return r.read()

    def fail_next(self, count: int, status: int = 400, code: str = "Throttling",
                  message: str = "Rate exceeded", match: str | None = None) -> dict:
        """The next `count` requests (whose path contains `match`, when given) answer `status`
        with `code` and `message` in AWS's error shape. Signed requests fail this way only once
        their signature has been checked (and found good)."""
        return self._call("POST", "fail", {"count": count, "status": status, "code": code,
                                           "message": message, "match": match})

    def clear_failures(self):
        self._call("POST", "fail/reset", {})

    def requests(self, service: str | None = None) -> list[dict]:
        """Every request received, in order (of `service` alone when given: cloudfront, sts,
        imds, container; None for a path the stub does not serve; calls to this control API
        are not recorded): method, path, query (raw), headers [[name, value], ...], body,
        service, operation, access_key_id, signature_ok (None: not signed), status, code,
        message (of an error answer), time."""
        got = self._call("GET", "requests")
        return [r for r in got if service is None or r["service"] == service]

    def reset_requests(self):
        self._call("POST", "requests/reset", {})

    def issue_credentials(self, lifetime: int | None = None, role_arn: str | None = None) -> dict:
        """New temporary credentials the stub accepts: access_key_id, secret, token,
        expiration (ISO 8601), expires (epoch seconds), role_arn, source."""
        body = {"lifetime": lifetime}
        if role_arn:
            body["role_arn"] = role_arn
        return self._call("POST", "credentials", body)

    def issued_credentials(self) -> list[dict]:
        """Every temporary credential handed out (through STS, IMDS, containers, this API)."""
        return self._call("GET", "credentials")

    def reset(self):
        """Back to the state at start: default key and role, no tenants, failures or record."""
        self._call("POST", "reset", {})
        if self.initial_state is not None:
            self._call("POST", "state", self.initial_state)
