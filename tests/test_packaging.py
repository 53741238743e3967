"""The pytest plugin as installed: one registration (the ``pytest11`` entry point), under the import
name ``flatbed_fixtures`` so that PyPI's ``fixtures`` keeps its own; unit tests load it without
pyroute2 importable."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_is_installed():
    listed = set(pyproject()["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "flatbed").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert "flatbed_fixtures" in listed and not any(p == "fixtures" or p.startswith("fixtures.") for p in listed)


def test_the_plugin_is_an_entry_point_and_the_root_conftest_registers_nothing():
    entry = pyproject()["project"]["entry-points"]["pytest11"]
    assert entry["flatbed"] == "flatbed_fixtures.plugin"
    assert "pytest_plugins" not in (REPO / "conftest.py").read_text()


PROBE = '''
import pytest

def test_plugin_registered_once(request):
    pm = request.config.pluginmanager
    mods = [p for p in pm.get_plugins() if getattr(p, "__name__", "") == "flatbed_fixtures.plugin"]
    assert len(mods) == 1 and pm.get_plugin("flatbed") is mods[0]
    assert request.config.getoption("provider") == "auto"   # its options are there

def test_pyroute2_is_not_importable():
    with pytest.raises(ImportError):
        import pyroute2  # noqa: F401
'''


def blocked(tmp_path: Path) -> dict:
    """An environment where ``import pyroute2`` fails."""
    stub = tmp_path / "block" / "pyroute2"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ModuleNotFoundError('blocked for this test', name='pyroute2')\n")
    return {"PYTHONPATH": str(tmp_path / "block"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}


def test_unit_tests_run_with_the_plugin_and_without_pyroute2(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "test_probe.py").write_text(PROBE)
    env = blocked(tmp_path)
    modules = ["tests/test_readiness.py", "tests/test_artifacts.py", "tests/test_destroy_policy.py"]
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(probe / "test_probe.py"),
                          *modules], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    # ... and every unit test module imports without it (the few tests that touch the host's
    # namespaces skip, saying so)
    collect = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--co", "tests/"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert collect.returncode == 0, collect.stdout[-3000:] + collect.stderr[-2000:]


def test_pypi_fixtures_is_not_shadowed_by_a_checkout_on_the_path(tmp_path):
    fake = tmp_path / "site" / "fixtures"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("WHO = 'pypi'\n")
    code = (f"import sys; sys.path[:0] = [{str(REPO)!r}]; sys.path.append({str(tmp_path / 'site')!r})\n"
            "import fixtures, flatbed_fixtures.plugin\nprint(fixtures.WHO)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "pypi"
