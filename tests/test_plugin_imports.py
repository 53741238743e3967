"""The pytest plugin (fixtures/) imports nothing heavy: unit tests load it without providers,
pyroute2, paramiko, libvirt or vagrant, which load when the first testbed comes up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGINS = tuple(f"flatbed_fixtures.{m}" for m in ("plugin", "guests", "reuse", "cli", "metadata", "variants"))
HEAVY = ("paramiko", "pyroute2", "libvirt", "vagrant", "flatbed.providers.", "flatbed.testbed", "flatbed.guestssh")


def test_plugin_modules_import_nothing_heavy() -> None:
    code = (f"import sys\nfor name in {PLUGINS!r}: __import__(name)\n"
            f"print('\\n'.join(m for m in sys.modules if m.startswith({HEAVY!r})))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert loaded.stdout.split() == []


def test_check_library_imports_without_a_testbed() -> None:
    """Tools and unit tests import the checks; no provider is loaded for that."""
    code = ("import sys\nfrom flatbed.checks import compare, console, expect, listings, runs, services, timeouts, "
            "traffic\nprint('\\n'.join(m for m in sys.modules if m.startswith(('flatbed.providers.', 'pyroute2'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert loaded.stdout.split() == []
