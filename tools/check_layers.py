#!/usr/bin/env python3
"""Refuses an upward #include between the folders of proxy/ (the layers of the code).

Every folder of proxy/ is one layer and one CMake library (wk_<folder>) that links only the
layers below it. A file may include headers of its own layer and of layers below; an include of
"<folder>/..." naming a higher layer is an upward edge and fails the check, as does a folder
(or a file directly in proxy/) that the table below does not name.

    tools/check_layers.py [--root DIR]   (DIR defaults to proxy/ next to this script's folder)

Prints one line per problem, "path:line: ...", and exits 1 when there is any. Python 3 standard
library only; run by the build (before wkproxy links) and by ctest.
"""

import argparse
import pathlib
import re
import sys

# Bottom to top; the position is the layer. Keep in step with CMakeLists.txt (one library each)
# and the layer table of docs/internals.md.
LAYERS = [
    "core",        # ASCII, host patterns, endpoint and time text, failures, Asio token
    "config",      # the configuration and its loader
    "routing",     # Host, normalization, the route decision
    "wire",        # pure parsers of untrusted bytes (fuzzed)
    "observe",     # logs, counters, metrics
    "validation",  # validation plan and events
    "http",        # HTTP rules without I/O
    "net",         # listeners, streams, TLS, tunnels
    "upstream",    # resolver, connector, pool
    "aws",         # AWS API requests: SigV4
    "runtime",     # the runtime snapshot
    "session",     # one client connection
    "app",         # worker, server, admin, status page
    "cli",         # command-line tools
]

# Files directly in proxy/: main() above everything; the Asio/Beast compilation unit includes no
# project header at all (below everything).
ROOT_FILES = {"main.cpp": len(LAYERS), "asio_beast.cpp": -1}

SOURCE_SUFFIXES = {".hpp", ".cpp", ".h", ".cc", ".ipp"}
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def layer_name(rank):
    if rank == len(LAYERS):
        return "main"
    if rank < 0:
        return "asio"
    return LAYERS[rank]


def rank_of(relative):
    """The layer rank of a path relative to proxy/ ("session/context.hpp"), or None if unknown."""
    parts = relative.split("/")
    if len(parts) == 1:
        return ROOT_FILES.get(relative)
    if parts[0] in LAYERS:
        return LAYERS.index(parts[0])
    return None


def check(root):
    """All problems under `root` (the proxy/ folder), as printable lines."""
    root = pathlib.Path(root)
    problems = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and entry.name not in LAYERS:
            problems.append(f"{entry}: folder {entry.name}/ is not in the layer table "
                            f"(tools/check_layers.py)")
        elif entry.is_file() and entry.suffix in SOURCE_SUFFIXES and entry.name not in ROOT_FILES:
            problems.append(f"{entry}: file directly in {root.name}/ is not in the layer table "
                            f"(tools/check_layers.py)")
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix not in SOURCE_SUFFIXES:
            continue
        relative = path.relative_to(root).as_posix()
        own = rank_of(relative)
        if own is None:
            continue  # reported above as an unknown folder or file
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for number, line in enumerate(lines, start=1):
            match = INCLUDE.match(line)
            if not match or "/" not in match.group(1):
                continue  # a system header, or a generated one next to the sources
            included = match.group(1)
            target = rank_of(included)
            if target is None:
                problems.append(f"{path}:{number}: includes {included}, whose folder "
                                f"{included.split('/')[0]}/ is not in the layer table")
            elif target > own:
                problems.append(f"{path}:{number}: upward include: {layer_name(own)} (layer "
                                f"{own}) includes {included} ({layer_name(target)}, layer "
                                f"{target})")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parent.parent / "proxy",
                        help="the proxy/ source folder")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"check_layers: {args.root}: not a folder", file=sys.stderr)
        return 2
    problems = check(args.root)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"check_layers: {len(problems)} problem(s); layers bottom to top: "
              + " < ".join(LAYERS), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
