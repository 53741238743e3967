"""Starting a container: systemd-nspawn's command line, and a launcher shell around it.

The launcher puts itself (so nspawn and the container) into the node's cgroups first, and starts
nspawn again when the container reboots (exit 133). The machine notes explain each nspawn
option; the short version is in :func:`nspawn_argv`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from flatbed import hostnet
from flatbed.images.base import BaseImage

LAUNCHER = """\
for root in {cgroup_roots}; do
  mkdir -p "$root/{cgroup}" && echo $$ > "$root/{cgroup}/cgroup.procs"
done
while :; do
  "$@"; rc=$?
  [ "$rc" -eq 133 ] || exit "$rc"
  echo "flatbed: container rebooted, starting it again"
done
"""


def nspawn_argv(machine: str, hostname: str, base: BaseImage, upper: Path, netns: str) -> list[str]:
    return [
        "systemd-nspawn", "--quiet", "--boot",
        "-D", str(base.root), f"--overlay={base.root}:{upper}:/",
        f"--machine={machine}", f"--hostname={hostname}",
        f"--network-namespace-path={hostnet.NETNS_DIR / netns}",
        # No systemd on the host: do not register with machined, stay in our own cgroup.
        "--register=no", "--keep-unit",
        "--console=read-only",
        # Not the host's resolver: nodes never need the internet, and dnsmasq must not forward
        # guests' queries anywhere outside the testbed.
        "--resolv-conf=off",
        # dnsmasq, bridges, iptables inside need it; the rest of nspawn's default set stays.
        "--capability=CAP_NET_ADMIN",
    ]


def launch(nspawn: list[str], cgroup: str, cgroup_roots: tuple[Path, ...], console_log: Path) -> int:
    """Start the launcher (its own session) with nspawn's output in ``console_log``; its pid."""
    env = dict(os.environ,
               # Writable /sys/class/net of the container's own netns (ifupdown enslaves eth2).
               SYSTEMD_NSPAWN_API_VFS_WRITABLE="network",
               # Host cgroups are hybrid; libvirt in the container needs a writable v2 tree.
               SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
    script = LAUNCHER.format(cgroup_roots=" ".join(str(r) for r in cgroup_roots), cgroup=cgroup)
    console_log.parent.mkdir(parents=True, exist_ok=True)
    with open(console_log, "ab") as log:
        proc = subprocess.Popen(["/bin/sh", "-c", script, "flatbed-launcher", *nspawn],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    return proc.pid


def find_leader(netns: str) -> int | None:
    """PID 1 of the container: the process in its netns that is pid 1 of its own pid namespace."""
    for pid in hostnet.pids_in(netns):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:"):
                ids = line.split()[1:]
                if len(ids) > 1 and ids[-1] == "1":
                    return pid
    return None
