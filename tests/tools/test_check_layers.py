"""tools/check_layers.py: it passes a layered tree and names every upward or unknown edge."""

import pathlib
import subprocess
import sys
import tempfile
import unittest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "tools" / "check_layers.py"


class CheckLayers(unittest.TestCase):
    def setUp(self):
        self._dir = tempfile.TemporaryDirectory()
        self.root = pathlib.Path(self._dir.name) / "proxy"
        self.write("core/ascii.hpp", "#pragma once\n#include <string>\n")
        self.write("http/local_reply.cpp", '#include "http/local_reply.hpp"\n'
                   '#include "core/ascii.hpp"\n#include "cli_help.hpp"\n')
        self.write("http/local_reply.hpp", "#pragma once\n")
        self.write("main.cpp", '#include "app/server.hpp"\n')
        self.write("app/server.hpp", '#pragma once\n#include "runtime/runtime.hpp"\n')
        self.write("runtime/runtime.hpp", "#pragma once\n")

    def tearDown(self):
        self._dir.cleanup()

    def write(self, relative, text):
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def run_check(self):
        return subprocess.run([sys.executable, str(SCRIPT), "--root", str(self.root)],
                              capture_output=True, text=True, check=False)

    def test_a_layered_tree_passes(self):
        result = self.run_check()
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, "")

    def test_an_upward_include_fails_naming_file_line_and_edge(self):
        self.write("observe/metrics.cpp", '#include "observe/metrics.hpp"\n\n'
                   '#include "http/local_reply.hpp"\n')
        self.write("observe/metrics.hpp", "#pragma once\n")
        result = self.run_check()
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"{self.root / 'observe' / 'metrics.cpp'}:3: upward include: observe "
                      "(layer 4) includes http/local_reply.hpp (http, layer 6)", result.stderr)
        self.assertNotIn("metrics.cpp:1:", result.stderr)

    def test_a_lower_layer_including_a_higher_one_fails_anywhere_in_the_stack(self):
        # session may include runtime; runtime may not include session (one step down the table).
        self.write("session/context.hpp", '#pragma once\n#include "runtime/runtime.hpp"\n')
        self.write("runtime/runtime.hpp", "#pragma once\n")
        self.assertEqual(self.run_check().returncode, 0)
        self.write("runtime/runtime.cpp", '#include "session/context.hpp"\n')
        result = self.run_check()
        self.assertEqual(result.returncode, 1)
        self.assertIn("runtime.cpp:1: upward include: runtime (layer 10) includes "
                      "session/context.hpp (session, layer 11)", result.stderr)

    def test_a_folder_outside_the_table_fails(self):
        self.write("misc/helpers.hpp", "#pragma once\n")
        result = self.run_check()
        self.assertEqual(result.returncode, 1)
        self.assertIn("folder misc/ is not in the layer table", result.stderr)

    def test_an_include_of_a_folder_outside_the_table_fails(self):
        self.write("core/ascii.cpp", '#include "core/ascii.hpp"\n#include "util/x.hpp"\n')
        result = self.run_check()
        self.assertEqual(result.returncode, 1)
        self.assertIn("ascii.cpp:2: includes util/x.hpp, whose folder util/ is not in the layer "
                      "table", result.stderr)


if __name__ == "__main__":
    unittest.main()
