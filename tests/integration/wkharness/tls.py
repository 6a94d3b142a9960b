"""A throw-away test CA made with the openssl CLI."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile

from .common import CF_SNI


class TestCA:
    """A CA and a server certificate made at test time with the openssl CLI, plus a second,
    unrelated CA that signs a certificate for the same names (for verification failures).

    Attributes: ca_pem, cert_pem, key_pem (trusted chain); other_ca_pem, other_cert_pem,
    other_key_pem (the unrelated CA's). issue() makes more leaf certificates.
    """

    __test__ = False  # not a unittest class

    def __init__(self, dns_names=(CF_SNI, "localhost"), ips=("127.0.0.1", "::1")):
        self.dir = tempfile.mkdtemp(prefix="wkproxy-ca-")
        try:
            self.ca_pem, self._ca_key = self._make_ca("ca", "wkproxy test CA")
            self.other_ca_pem, self._other_ca_key = self._make_ca("other-ca", "unrelated test CA")
            self.cert_pem, self.key_pem = self.issue("server", dns_names, ips)
            self.other_cert_pem, self.other_key_pem = self.issue(
                "other-server", dns_names, ips, ca=(self.other_ca_pem, self._other_ca_key))
        except Exception:
            self.cleanup()
            raise

    def _run(self, *args):
        p = subprocess.run(["openssl", *args], cwd=self.dir, capture_output=True, text=True,
                           timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed:\n{p.stderr}")

    def _make_ca(self, stem, common_name):
        key, pem = os.path.join(self.dir, stem + ".key"), os.path.join(self.dir, stem + ".pem")
        self._run("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", key, "-out", pem, "-days", "2", "-subj",
                  f"/CN={common_name}", "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return pem, key

    def issue(self, stem, dns_names=(), ips=(), ca=None):
        """A leaf certificate (PEM paths cert, key) with the given SAN names and IPs."""
        ca_pem, ca_key = ca or (self.ca_pem, self._ca_key)
        key = os.path.join(self.dir, stem + ".key")
        csr = os.path.join(self.dir, stem + ".csr")
        pem = os.path.join(self.dir, stem + ".pem")
        ext = os.path.join(self.dir, stem + ".ext")
        san = [f"DNS:{n}" for n in dns_names] + [f"IP:{i}" for i in ips]
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n")
            if san:
                f.write("subjectAltName=" + ",".join(san) + "\n")
        cn = dns_names[0] if dns_names else "wkproxy test server"
        self._run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
        self._run("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial",
                  "-out", pem, "-days", "2", "-extfile", ext)
        return pem, key

    def server_context(self, cert_pem=None, key_pem=None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_pem or self.cert_pem, key_pem or self.key_pem)
        return ctx

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)
