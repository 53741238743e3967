"""Vagrant itself, through python-vagrant: run inside the testbed's namespace, with the run's own
environment (its machine folders and home in the testbed directory; only the box store is shared)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import vagrant as python_vagrant

from flatbed import procs
from flatbed.waiters import wait_until

REPO = Path(__file__).resolve().parents[3]  # the project's Vagrantfile is at the top
VAGRANT_PLUGIN = "vagrant-libvirt"
# The oldest versions flatbed is tested with (Debian 12's vagrant 2.3.4 and vagrant-libvirt 0.11.2).
MIN_VAGRANT = (2, 3)
MIN_PLUGIN = (0, 11)


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


def version_tuple(text: str) -> tuple[int, ...]:
    """``2.3.4`` -> (2, 3, 4); ``0.11.2.pre`` -> (0, 11, 2)."""
    return tuple(int(part) for part in re.findall(r"\d+", text.split("-")[0])[:3])


def too_old(what: str, version: str, minimum: tuple[int, ...]) -> str | None:
    if version_tuple(version) >= minimum:
        return None
    return (f"{what} {version} is too old (flatbed needs {'.'.join(map(str, minimum))} or later, "
            f"as Debian 12 ships)")


def plugin_missing() -> str | None:
    """Why Vagrant cannot drive libvirt here (missing, or older than what flatbed is tested with), or None."""
    vagrant = NetnsVagrant(None, root=str(REPO), env=vagrant_env({}))
    try:
        version = vagrant.version()
        plugins = vagrant.plugin_list()
    except (OSError, subprocess.CalledProcessError, ValueError) as e:
        return f"`vagrant` does not answer: {e}"
    except Exception as e:  # python-vagrant's own: output it cannot parse
        return f"`vagrant --version` printed something unexpected: {e}"
    plugin = next((p for p in plugins if p.name == VAGRANT_PLUGIN), None)
    if plugin is None:
        return f"the {VAGRANT_PLUGIN} plugin is missing (apt-get install vagrant-libvirt)"
    return too_old("Vagrant", version, MIN_VAGRANT) or too_old(VAGRANT_PLUGIN, plugin.version, MIN_PLUGIN)


def kill_group(pid: int) -> None:
    """Kill a vagrant started in its own session (Ruby and its children)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    wait_until(lambda: not procs.alive(pid), timeout=10, what=f"vagrant (pid {pid}) to exit")
