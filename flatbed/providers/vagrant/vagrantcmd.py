"""Vagrant itself, through python-vagrant: run inside the testbed's namespace, with the run's own
environment (its machine folders and home in the testbed directory; only the box store is shared)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import vagrant as python_vagrant

from flatbed import procs
from flatbed.waiters import wait_until

REPO = Path(__file__).resolve().parents[3]  # the project's Vagrantfile is at the top
VAGRANT_PLUGIN = "vagrant-libvirt"


class NetnsVagrant(python_vagrant.Vagrant):
    """python-vagrant running every vagrant command inside the testbed's network namespace."""

    def __init__(self, netns: str | None, **kwargs: Any):
        super().__init__(**kwargs)
        self.netns = netns

    def _make_vagrant_command(self, args):  # noqa: ANN001, ANN202 - python-vagrant's signature
        command = super()._make_vagrant_command(args)
        return (["nsenter", f"--net=/run/netns/{self.netns}", "--"] + command) if self.netns else command

    def command(self, args: list[str]) -> list[str]:
        """The full command line of ``vagrant ARGS`` (for runs python-vagrant does not stream well)."""
        return self._make_vagrant_command(args)


def vagrant_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "VAGRANT_DEFAULT_PROVIDER": "libvirt",
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1",
    }
    env.update(extra)
    return env


def for_run(vagrant_dir: Path, uri: str, netns: str | None) -> NetnsVagrant:
    """python-vagrant on the project's Vagrantfile, with one run's environment."""
    env = vagrant_env({
        "VAGRANT_HOME": str(vagrant_dir / "home"),
        "VAGRANT_DOTFILE_PATH": str(vagrant_dir / "machines"),
        "FLATBED_VAGRANT_CONFIG": str(vagrant_dir / "topology.json"),
        "LIBVIRT_DEFAULT_URI": uri,
    })
    return NetnsVagrant(netns, root=str(REPO), env=env)


def plugin_missing() -> str | None:
    """Why Vagrant cannot drive libvirt here, or None."""
    try:
        plugins = NetnsVagrant(None, root=str(REPO), env=vagrant_env({})).plugin_list()
    except (OSError, subprocess.CalledProcessError) as e:
        return f"`vagrant plugin list` failed: {e}"
    return None if VAGRANT_PLUGIN in {p.name for p in plugins} else f"the {VAGRANT_PLUGIN} plugin is missing"


def kill_group(pid: int) -> None:
    """Kill a vagrant started in its own session (Ruby and its children)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    wait_until(lambda: not procs.alive(pid), timeout=10, what=f"vagrant (pid {pid}) to exit")
