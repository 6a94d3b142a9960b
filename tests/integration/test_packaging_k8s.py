"""Packaging: the Kubernetes sidecar manifest and the container image's files.

packaging/kubernetes/sidecar.yaml is read with a small loader for the YAML subset the manifest
is written in (block mappings and sequences, `|` literals, flow lists of scalars): the suite
uses the Python standard library only, and Debian 12 packages no Kubernetes schema validator
(no kubeconform or kubeval in apt). When PyYAML happens to be importable, the loader's result
is compared with yaml.safe_load_all's, which keeps the loader honest. Then the fields
docs/operations.md promises are checked, and the embedded wkproxy config is loaded by the real
binary (`wkproxy -t`) and run, to see that the probes work without the admin token while
everything else on the admin listener needs it.

The container's default config (packaging/container/wkproxy.yaml, COPY'd into the image as
/etc/wkproxy/wkproxy.yaml) must pass `wkproxy -t` too, and its HEALTHCHECK script is run
against a real wkproxy. Building and running the image itself is tools/image.sh (not ctest).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import unittest

from wkharness import Proxy, curl, missing, run_check, wkproxy_bin

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MANIFEST = os.path.join(ROOT, "packaging", "kubernetes", "sidecar.yaml")
CONTAINER_DIR = os.path.join(ROOT, "packaging", "container")
CONTAINER_CONFIG = os.path.join(CONTAINER_DIR, "wkproxy.yaml")
DOCKERFILE = os.path.join(CONTAINER_DIR, "Dockerfile")
HEALTHCHECK = os.path.join(CONTAINER_DIR, "healthcheck.sh")


# ------------------------------------------------------------------------------------------------
# A loader for the YAML subset the packaging files use. Anything outside it is an error (with
# the line number), never a silent misreading.


class YamlSubsetError(ValueError):
    pass


def _strip_comment(line: str) -> str:
    quote = None
    for k, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1] in " \t"):
            return line[:k].rstrip()
    return line.rstrip()


_KEY = re.compile(r'^([A-Za-z0-9_./-]+|"[^"\\]*"):(?: +(.*))?$')
_INT = re.compile(r"^-?(0|[1-9][0-9]*)$")


def _split_flow(body: str, where: str) -> list[str]:
    items, cur, quote = [], "", None
    for ch in body:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            cur += ch
        elif ch in "[]{}":
            raise YamlSubsetError(f"{where}: nested flow collections are not in the subset")
        elif ch == ",":
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if quote:
        raise YamlSubsetError(f"{where}: unterminated quote")
    if cur.strip() or items:
        items.append(cur.strip())
    if any(item == "" for item in items):
        raise YamlSubsetError(f"{where}: empty flow item")
    return items


def _scalar(text: str, where: str):
    if text.startswith("["):
        if not text.endswith("]"):
            raise YamlSubsetError(f"{where}: flow list must end on its line")
        return [_scalar(item, where) for item in _split_flow(text[1:-1], where)]
    if text.startswith('"'):
        if len(text) < 2 or not text.endswith('"'):
            raise YamlSubsetError(f"{where}: bad double-quoted scalar")
        return json.loads(text)  # the subset's escapes are JSON's
    if text.startswith("'"):
        if len(text) < 2 or not text.endswith("'"):
            raise YamlSubsetError(f"{where}: bad single-quoted scalar")
        return text[1:-1].replace("''", "'")
    if text[0] in "{&*!|>%@`" or ": " in text or text.endswith(":"):
        raise YamlSubsetError(f"{where}: {text!r} is not in the subset")
    if _INT.match(text):
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~"):
        return None
    # YAML 1.1 booleans and floats would read differently elsewhere: quote them.
    if text.lower() in ("yes", "no", "on", "off", "y", "n") or re.match(r"^-?[0-9.]+$", text):
        raise YamlSubsetError(f"{where}: quote {text!r}")
    return text


class YamlSubset:
    def __init__(self, text: str, name: str):
        self.lines = text.split("\n")
        self.name = name
        self.i = 0

    def _where(self) -> str:
        return f"{self.name}:{self.i + 1}"

    def _peek(self):
        """(indent, content) of the next line with content, or None at the end."""
        while self.i < len(self.lines):
            line = _strip_comment(self.lines[self.i])
            if line.strip() == "":
                self.i += 1
                continue
            content = line.lstrip(" ")
            if content.startswith("\t"):
                raise YamlSubsetError(f"{self._where()}: tab indentation")
            return len(line) - len(content), content
        return None

    def documents(self) -> list:
        docs = []
        while (p := self._peek()) is not None:
            if p[1] == "---":
                self.i += 1
                continue
            if p[0] != 0:
                raise YamlSubsetError(f"{self._where()}: a document starts at column 0")
            docs.append(self._block(0))
            p = self._peek()
            if p is not None and p[1] != "---":
                raise YamlSubsetError(f"{self._where()}: unexpected {p[1]!r}")
        return docs

    def _block(self, indent: int):
        p = self._peek()
        is_seq = p[1] == "-" or p[1].startswith("- ")
        return self._sequence(indent) if is_seq else self._mapping(indent)

    def _sequence(self, indent: int) -> list:
        out = []
        while (p := self._peek()) is not None and p[0] == indent and (
                p[1] == "-" or p[1].startswith("- ")):
            rest = p[1][1:].lstrip(" ")
            if rest == "":
                self.i += 1
                q = self._peek()
                if q is None or q[0] <= indent:
                    raise YamlSubsetError(f"{self._where()}: empty sequence item")
                out.append(self._block(q[0]))
            elif _KEY.match(rest):
                # "- key: value" opens a mapping at the column of "key".
                column = indent + len(p[1]) - len(rest)
                self.lines[self.i] = " " * column + rest
                out.append(self._mapping(column))
            else:
                self.i += 1
                out.append(_scalar(rest, self._where()))
        if p is not None and p[0] > indent:
            raise YamlSubsetError(f"{self._where()}: unexpected indentation")
        return out

    def _mapping(self, indent: int) -> dict:
        out = {}
        while (p := self._peek()) is not None and p[0] == indent:
            if p[1] == "---" or p[1].startswith("- "):
                break
            m = _KEY.match(p[1])
            if not m:
                raise YamlSubsetError(f"{self._where()}: expected 'key: value', got {p[1]!r}")
            key = m.group(1).strip('"')
            if key in out:
                raise YamlSubsetError(f"{self._where()}: duplicate key {key!r}")
            rest = m.group(2) or ""
            where = self._where()
            self.i += 1
            if rest == "":
                q = self._peek()
                if q is not None and (q[0] > indent or (q[0] == indent and q[1].startswith("- "))):
                    out[key] = self._block(q[0])
                else:
                    out[key] = None
            elif rest in ("|", "|-"):
                out[key] = self._literal(indent, keep_newline=rest == "|")
            else:
                out[key] = _scalar(rest, where)
        if p is not None and p[0] > indent:
            raise YamlSubsetError(f"{self._where()}: unexpected indentation")
        return out

    def _literal(self, parent_indent: int, keep_newline: bool) -> str:
        lines, block_indent = [], None
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.strip() == "":
                lines.append("")
                self.i += 1
                continue
            ind = len(line) - len(line.lstrip(" "))
            if ind <= parent_indent or (block_indent is not None and ind < block_indent):
                break
            block_indent = ind if block_indent is None else block_indent
            lines.append(line[block_indent:])
            self.i += 1
        while lines and lines[-1] == "":
            lines.pop()
        return "\n".join(lines) + ("\n" if keep_newline and lines else "")


def load_yaml_subset(path: str) -> list:
    with open(path) as f:
        return YamlSubset(f.read(), os.path.relpath(path, ROOT)).documents()


# ------------------------------------------------------------------------------------------------
# helpers


def seconds(duration: str) -> float:
    """wkproxy's duration syntax (250ms, 5s, 2m, 1h, bare seconds) in seconds."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", str(duration).strip())
    if not m:
        raise AssertionError(f"not a duration: {duration!r}")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def split_address(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host or "0.0.0.0", int(port)


def prestop_sleep(container: dict) -> float:
    """Seconds a container's preStop hook sleeps (exec sleep N, or the native sleep action)."""
    pre = container.get("lifecycle", {}).get("preStop")
    if pre is None:
        return 0
    if "sleep" in pre:
        return pre["sleep"]["seconds"]
    command = pre["exec"]["command"]
    if command[0] != "sleep" or len(command) != 2:
        raise AssertionError(f"preStop is not a plain sleep: {command}")
    return float(command[1])


class SubsetLoader(unittest.TestCase):
    def test_it_refuses_what_it_does_not_read_like_yaml_does(self):
        for text in ("a: on\n", "a: {b: 1}\n", "a: 1.5\n", "a: [x, [y]]\n", "a: 1\na: 2\n",
                     "a: b: c\n", "a:\n  - x\n   y: 1\n", "a: &anchor x\n"):
            with self.subTest(text=text), self.assertRaises(YamlSubsetError):
                YamlSubset(text, "t").documents()

    def test_it_reads_literals_sequences_of_mappings_and_quoted_scalars(self):
        text = ("k:\n  - name: a  # comment\n    v: \"x # y\"\n  - 'it''s'\n"
                "lit: |\n  one\n\n    two # kept\nn: 3\nt: true\nl: [a, \"b\"]\n")
        self.assertEqual(YamlSubset(text, "t").documents(), [{
            "k": [{"name": "a", "v": "x # y"}, "it's"], "lit": "one\n\n  two # kept\n",
            "n": 3, "t": True, "l": ["a", "b"]}])


class SidecarManifest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.docs = load_yaml_subset(MANIFEST)
        by_kind = {}
        for doc in cls.docs:
            by_kind.setdefault(doc["kind"], []).append(doc)
        cls.by_kind = by_kind
        (cls.deployment,) = by_kind["Deployment"]
        (cls.service,) = by_kind["Service"]
        cls.pod = cls.deployment["spec"]["template"]["spec"]
        containers = {c["name"]: c for c in cls.pod["containers"]}
        cls.wk = containers["wkproxy"]
        cls.app = containers["app"]
        # The config file the container is started with: -c PATH, found through the volume
        # mount that holds it and the ConfigMap behind that volume.
        args = cls.wk["args"]
        config_path = args[args.index("-c") + 1]
        mount = next(m for m in cls.wk["volumeMounts"]
                     if config_path.startswith(m["mountPath"].rstrip("/") + "/"))
        volume = next(v for v in cls.pod["volumes"] if v["name"] == mount["name"])
        configmap = next(c for c in by_kind["ConfigMap"]
                         if c["metadata"]["name"] == volume["configMap"]["name"])
        cls.config_key = config_path[len(mount["mountPath"].rstrip("/")) + 1:]
        cls.config_text = configmap["data"][cls.config_key]
        cls.config = YamlSubset(cls.config_text, "embedded wkproxy.yaml").documents()[0]

    def test_the_subset_loader_reads_the_manifest_as_pyyaml_does(self):
        try:
            import yaml  # noqa: PLC0415 (only this cross-check needs it; tools/deps.sh installs it)
        except ImportError:
            missing("PyYAML not installed; the subset loader alone read the manifest")
        with open(MANIFEST) as f:
            self.assertEqual(list(yaml.safe_load_all(f)), self.docs)
        self.assertEqual(yaml.safe_load(self.config_text), self.config)

    def test_the_manifest_has_a_deployment_configmaps_and_a_service(self):
        self.assertEqual(sorted(self.by_kind), ["ConfigMap", "Deployment", "Service"])
        for doc in self.docs:
            self.assertIn("apiVersion", doc)
            self.assertIn("name", doc["metadata"])

    def test_the_embedded_config_passes_wkproxy_t_with_the_token_and_fails_without_it(self):
        p, _ = run_check(self.config_text, env={"WKPROXY_ADMIN_TOKEN": "s3cret"})
        self.assertEqual(p.returncode, 0, p.stderr)
        env = {k: v for k, v in os.environ.items() if k != "WKPROXY_ADMIN_TOKEN"}
        p = subprocess.run([wkproxy_bin(), "-t", "-c", "/dev/stdin"],
                           input=self.config_text, capture_output=True, text=True, env=env,
                           timeout=30)
        self.assertEqual(p.returncode, 1, "a missing Secret must stop the proxy, not open "
                                          "the admin listener without a token")
        self.assertIn("WKPROXY_ADMIN_TOKEN is not set", p.stderr)

    def test_the_token_comes_from_a_secret(self):
        self.assertEqual(self.config["admin"]["token"], "${WKPROXY_ADMIN_TOKEN}")
        env = {e["name"]: e for e in self.wk["env"]}
        self.assertIn("secretKeyRef", env["WKPROXY_ADMIN_TOKEN"]["valueFrom"])

    def _container_port(self, port) -> int:
        if isinstance(port, int):
            return port
        return next(p["containerPort"] for p in self.wk["ports"] if p["name"] == port)

    def test_probes_are_on_the_admin_listener(self):
        host, admin_port = split_address(self.config["admin"]["listen"])
        # kubelet probes come from the node, to the pod IP: loopback would never answer them.
        self.assertNotIn(host, ("127.0.0.1", "::1", "localhost"))
        expected = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
        for probe, path in expected.items():
            get = self.wk[probe]["httpGet"]
            self.assertEqual(get["path"], path, probe)
            self.assertEqual(self._container_port(get["port"]), admin_port, probe)
            self.assertNotIn("httpHeaders", get, f"{probe}: the probes need no token")
        if "startupProbe" in self.wk:
            get = self.wk["startupProbe"]["httpGet"]
            self.assertEqual(self._container_port(get["port"]), admin_port)

    def test_termination_grace_covers_prestop_accept_grace_and_drain(self):
        shutdown = self.config["shutdown"]
        needed = (prestop_sleep(self.wk) + seconds(shutdown["accept_grace"])
                  + seconds(shutdown["drain_timeout"]))
        self.assertIn("preStop", self.wk["lifecycle"])
        self.assertGreater(prestop_sleep(self.wk), 0)
        self.assertGreater(self.pod["terminationGracePeriodSeconds"], needed)
        # The app must keep serving while wkproxy still accepts requests for it.
        self.assertGreaterEqual(prestop_sleep(self.app),
                                prestop_sleep(self.wk) + seconds(shutdown["accept_grace"]))

    def test_wkproxy_runs_unprivileged_with_a_read_only_root(self):
        sc = self.wk["securityContext"]
        self.assertIs(sc["runAsNonRoot"], True)
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        with open(DOCKERFILE) as f:
            user = re.search(r"^USER (\d+)", f.read(), re.M).group(1)
        self.assertEqual(sc["runAsUser"], int(user), "the image's user")
        ports = [split_address(a if isinstance(a, str) else a["address"])[1]
                 for a in self.config["listen"]]
        low = any(p < 1024 for p in ports)
        added = sc["capabilities"].get("add", [])
        sysctls = {s["name"]: s["value"]
                   for s in self.pod.get("securityContext", {}).get("sysctls", [])}
        if low:
            self.assertTrue("NET_BIND_SERVICE" in added
                            or "net.ipv4.ip_unprivileged_port_start" in sysctls)
        else:
            self.assertEqual(added, [], "no capability is needed above port 1023")

    def test_resources_are_set(self):
        for c in (self.wk, self.app):
            self.assertIn("memory", c["resources"]["limits"], c["name"])
            self.assertIn("requests", c["resources"], c["name"])

    def test_the_service_reaches_wkproxy_not_the_app(self):
        labels = self.deployment["spec"]["template"]["metadata"]["labels"]
        self.assertEqual(self.deployment["spec"]["selector"]["matchLabels"], labels)
        for k, v in self.service["spec"]["selector"].items():
            self.assertEqual(labels.get(k), v)
        (listen,) = self.config["listen"]
        _, listen_port = split_address(listen)
        for port in self.service["spec"]["ports"]:
            self.assertEqual(self._container_port(port["targetPort"]), listen_port)
        self.assertEqual(split_address(self.config["origin"].removeprefix("http://"))[0],
                         "127.0.0.1", "the app is reached over the pod's loopback")

    def test_the_embedded_config_answers_probes_without_the_token_and_nothing_else(self):
        # The manifest's config with loopback port-0 addresses, otherwise as written.
        text = self.config_text
        for old in ('"0.0.0.0:8080"', '"0.0.0.0:9901"'):
            self.assertIn(old, text)
        text = text.replace('"0.0.0.0:8080"', '"127.0.0.1:0"')
        text = text.replace('"0.0.0.0:9901"', '"127.0.0.2:0"')
        with Proxy(text, env={"WKPROXY_ADMIN_TOKEN": "s3cret"}) as proxy:
            host, port = proxy.admin_address
            base = f"http://{host}:{port}"
            self.assertEqual(curl(base + "/healthz").status, 200)
            self.assertEqual(curl(base + "/readyz").status, 200)
            self.assertEqual(curl(base + "/metrics").status, 401)
            self.assertEqual(curl(base + "/config").status, 401)
            r = curl(base + "/config", "-H", "Authorization: Bearer s3cret")
            self.assertEqual(r.status, 200)
            self.assertNotIn("s3cret", r.body.decode())


class ContainerDefaults(unittest.TestCase):
    """The files COPY'd into the image."""

    def setUp(self):
        with open(CONTAINER_CONFIG) as f:
            self.config_text = f.read()
        with open(DOCKERFILE) as f:
            self.dockerfile = f.read()
        for name in ("WKPROXY_PORT", "WKPROXY_ADMIN", "WKPROXY_ORIGIN", "WKPROXY_CLOUDFRONT",
                     "WKPROXY_DOMAIN"):
            self.assertNotIn(name, os.environ, "the defaults are under test")

    def test_the_default_config_passes_wkproxy_t(self):
        p, _ = run_check(self.config_text)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_the_default_config_passes_wkproxy_t_with_its_variables_set(self):
        p, _ = run_check(self.config_text, env={
            "WKPROXY_PORT": "80", "WKPROXY_ADMIN": "127.0.0.1:9902",
            "WKPROXY_ORIGIN": "http://app.internal:3000",
            "WKPROXY_CLOUDFRONT": "https://d111111abcdef8.cloudfront.net",
            "WKPROXY_DOMAIN": "shop.example.com"})
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_the_dockerfile_ships_the_default_config_and_runs_it(self):
        self.assertRegex(self.dockerfile,
                         r"(?m)^COPY packaging/container/wkproxy\.yaml /etc/wkproxy/wkproxy\.yaml$")
        self.assertRegex(self.dockerfile, r'(?m)^CMD \["-c", "/etc/wkproxy/wkproxy\.yaml"\]$')
        self.assertRegex(self.dockerfile, r"(?m)^STOPSIGNAL SIGTERM$")
        self.assertRegex(self.dockerfile, r"(?m)^HEALTHCHECK ")
        self.assertRegex(self.dockerfile, r"(?m)^USER [1-9]")
        self.assertRegex(self.dockerfile, r"(?m)^EXPOSE 8080$")
        self.assertIn('listen: [":${WKPROXY_PORT:-8080}"]', self.config_text)

    def test_the_default_stop_fits_docker_stops_ten_seconds(self):
        config = YamlSubset(self.config_text, "wkproxy.yaml").documents()[0]
        self.assertLess(seconds(config["shutdown"]["accept_grace"])
                        + seconds(config["shutdown"]["drain_timeout"]), 10)

    def _healthcheck(self, *args):
        return subprocess.run(["bash", HEALTHCHECK, *args], capture_output=True, text=True,
                              timeout=10)

    def test_the_healthcheck_script_passes_on_a_running_proxy_and_fails_on_none(self):
        with Proxy(self.config_text, env={"WKPROXY_PORT": "0",
                                          "WKPROXY_ADMIN": "127.0.0.1:0"}) as proxy:
            admin = "%s:%d" % proxy.admin_address
            self.assertEqual(self._healthcheck(admin).returncode, 0)
            self.assertEqual(self._healthcheck(admin, "/readyz").returncode, 0)
            r = self._healthcheck(admin, "/nonexistent")
            self.assertEqual(r.returncode, 1)
            self.assertIn("unhealthy: HTTP/1.1 404", r.stderr)
        self.assertEqual(self._healthcheck(admin).returncode, 1, "nothing listens any more")


if __name__ == "__main__":
    unittest.main()
