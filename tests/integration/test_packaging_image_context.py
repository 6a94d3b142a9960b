"""The container image's build stage builds from exactly what its Dockerfile copies: a fast
stand-in for `tools/image.sh` (which needs podman, the apt mirror and minutes) that runs in
every CI run. The build-stage COPY lines of packaging/container/Dockerfile are read, those paths
alone are copied into an empty directory, and there CMake configures the release preset and
ninja is asked, without compiling, whether it could build wkproxy: a file the build reads but the
Dockerfile does not copy (as docs/wkproxy.1.md once was) fails here. The generated --help and
man page and the layer check, which read docs/ and tools/, are built for real. The runtime
stage's COPY sources must exist too, and its apt-get line must install the Debian package of
every shared library the binary links (ldd, dpkg -S): a new dependency such as liburing2 that
the image lacks fails here, not at the image's first start."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

from wkharness import have_tool, missing, wkproxy_bin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILE = os.path.join(ROOT, "packaging", "container", "Dockerfile")


def copy_lines():
    """[(stage, [sources], destination)] for every COPY without --from, in order."""
    stage, out = None, []
    with open(DOCKERFILE) as f:
        for line in f:
            m = re.match(r"\s*FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.I)
            if m:
                stage = m.group(1) or "runtime"
                continue
            m = re.match(r"\s*COPY\s+(.*)$", line, re.I)
            if m and "--from" not in m.group(1):
                parts = m.group(1).split()
                out.append((stage, parts[:-1], parts[-1]))
    return out


class ImageContext(unittest.TestCase):
    def test_the_build_stage_copies_everything_the_build_reads(self):
        for tool in ("cmake", "ninja"):
            if not have_tool(tool):
                missing(f"the command {tool!r}")
        copies = [c for c in copy_lines() if c[0] == "build"]
        self.assertTrue(copies, "no COPY in the build stage of the Dockerfile")
        d = tempfile.mkdtemp(prefix="wkproxy-image-context-")
        self.addCleanup(shutil.rmtree, d, True)
        for _, sources, dest in copies:
            for src in sources:
                path = os.path.join(ROOT, src)
                self.assertTrue(os.path.exists(path), f"the Dockerfile copies {src}: missing")
                # "/src/x" (a file, or a directory when it ends with "/" and there are several)
                target = os.path.join(d, dest.lstrip("/").removeprefix("src").lstrip("/"))
                if dest.endswith("/"):
                    target = os.path.join(target, os.path.basename(src.rstrip("/")))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                if os.path.isdir(path):
                    shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(path, target)
        env = dict(os.environ, WKPROXY_REVISION="test")
        env.pop("CMAKE_CXX_COMPILER_LAUNCHER", None)
        # No regeneration rule: a dry run would stop at CMake's glob check otherwise.
        conf = subprocess.run(["cmake", "--preset", "release", "-DCMAKE_SUPPRESS_REGENERATION=ON"],
                              cwd=d, env=env,
                              capture_output=True, text=True, timeout=300)
        self.assertEqual(conf.returncode, 0, "configure from the Dockerfile's paths failed:\n"
                         + conf.stdout[-3000:] + conf.stderr[-3000:])
        gen = subprocess.run(["cmake", "--build", "--preset", "release", "--target",
                              "wk_cli_docs", "wk_check_layers"], cwd=d, env=env,
                             capture_output=True, text=True, timeout=300)
        self.assertEqual(gen.returncode, 0, "--help, the man page or the layer check cannot be "
                         "built from the Dockerfile's paths:\n" + gen.stdout[-3000:]
                         + gen.stderr[-3000:])
        dry = subprocess.run(["cmake", "--build", "--preset", "release", "--target", "wkproxy",
                              "--", "-n"], cwd=d, env=env, capture_output=True, text=True,
                             timeout=300)
        self.assertEqual(dry.returncode, 0, "ninja cannot build wkproxy from the Dockerfile's "
                         "paths:\n" + dry.stdout[-3000:] + dry.stderr[-3000:])
        self.assertRegex(dry.stdout, r"Linking CXX executable wkproxy")

    def test_the_runtime_stage_copies_files_that_exist(self):
        runtime = [c for c in copy_lines() if c[0] == "runtime"]
        self.assertTrue(runtime)
        for _, sources, _ in runtime:
            for src in sources:
                with self.subTest(src=src):
                    self.assertTrue(os.path.exists(os.path.join(ROOT, src)), src)

    def test_the_runtime_stage_installs_every_shared_library_the_binary_links(self):
        for tool in ("ldd", "dpkg"):
            if not have_tool(tool):
                missing(f"the command {tool!r}")
        with open(DOCKERFILE) as f:
            text = f.read()
        runtime = text[text.index("FROM debian:bookworm-slim"):]
        install = re.search(r"apt-get install[^\n]*\\\n(.*?)&&", runtime, re.S)
        self.assertIsNotNone(install, "no apt-get install in the runtime stage")
        installed = set(install.group(1).replace("\\", " ").split())
        in_slim = {"libc6", "libstdc++6", "libgcc-s1"}  # bookworm-slim has them already
        ldd = subprocess.run(["ldd", wkproxy_bin()], capture_output=True, text=True, check=True)
        sanitized = "libasan" in ldd.stdout
        if sanitized:
            # The AddressSanitizer build keeps Boost.Container's out-of-line code (Boost.JSON's
            # memory resources), which the dev and release builds inline and drop from the
            # binary's needs. The image ships the release build.
            in_slim = in_slim | {"libboost-container1.81.0"}
        packages = set()
        for path in re.findall(r"=> (/\S+)", ldd.stdout):
            name = os.path.basename(path)
            if name.startswith(("libasan", "libubsan", "liblsan")):
                continue  # the sanitizer build's runtime, not the release binary's
            owner = None
            for candidate in (path, "/usr" + path, os.path.realpath(path)):
                out = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
                if out.returncode == 0:
                    owner = out.stdout.split(":", 1)[0]
                    break
            self.assertIsNotNone(owner, f"no Debian package owns {path}")
            packages.add(owner)
        self.assertIn("liburing2", packages)  # the check sees what it is meant to see
        self.assertEqual(sorted(packages - in_slim - installed), [],
                         "the runtime stage does not install these packages")


if __name__ == "__main__":
    unittest.main()
