"""A private libvirtd for one testbed, inside the testbed's network namespace.

The VM provider's libvirt networks (bridges, their iptables rules) and the VMs' taps then live
in a namespace the testbed made, never in the host's, and the host's own libvirt (if any) is
neither used nor touched. The daemon runs in a private mount namespace where its directories
are the testbed's own:

    /etc/libvirt        <testbed>/libvirt/etc    (libvirtd.conf, qemu.conf; no default network)
    /var/lib/libvirt    <testbed>/libvirt/lib    (storage pool with the VM disks)
    /var/log/libvirt    <testbed>/logs/libvirt   (qemu's per-domain logs, kept with the run's logs)
    /var/cache/libvirt  <cache>/libvirt          (QEMU capabilities, shared: probing costs seconds)
    /run/libvirt        a fresh tmpfs            (runtime state; the pid file is with the sockets)
    /sys                sysfs of the namespace   (as ``ip netns exec`` does)

Its sockets are in ``/run/flatbed/<run id>/`` (not the testbed directory: a socket path has at
most 107 bytes and testbed directories can be deep), reachable from the host's mount namespace as
``qemu+unix:///system?socket=/run/flatbed/<run id>/libvirt-sock``: vagrant, python-vagrant and
libvirt-python all use that URI.

Before anything else the mount namespace unmounts its copies of ``/run/netns/*``: a private
mount namespace would otherwise pin every other testbed's network namespaces (machine notes).
Its propagation is private, so namespaces created later never show up in it either.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from flatbed import procs
from flatbed.errors import FlatbedError
from flatbed.waiters import wait_until

# Without root, every define stalls ~56 s (the capability probe sees KVM the qemu user cannot
# use); cgroups are left alone so that nothing outlives the daemon in /sys/fs/cgroup; the host
# may have no AppArmor/SELinux profile for a private daemon; "file" stdio needs no virtlogd.
QEMU_CONF = """\
# Written by flatbed for a testbed's private libvirtd.
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
namespaces = [ ]
"""

LIBVIRTD_CONF = """\
# Written by flatbed for a testbed's private libvirtd: one root-only socket, nothing else.
unix_sock_dir = "{sock_dir}"
unix_sock_rw_perms = "0700"
unix_sock_ro_perms = "0700"
unix_sock_admin_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:{log}"
"""

LAUNCHER = r"""
set -e
mkdir -p /etc/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /run/libvirt  # mount points
for m in /run/netns/*; do  # each entry is a namespace's bind mount (maybe stacked)
  while umount -l "$m" 2>/dev/null; do :; done
done
mount -t tmpfs -o mode=0755 flatbed-run /run/libvirt
# sysfs as this network namespace sees it (the bridge and tap attributes libvirt reads).
umount -l /sys
mount -t sysfs flatbed-sys /sys
mount --bind "$FB_ETC" /etc/libvirt
mount --bind "$FB_LIB" /var/lib/libvirt
mount --bind "$FB_LOG" /var/log/libvirt
mount --bind "$FB_CACHE" /var/cache/libvirt
exec libvirtd --pid-file "$FB_PIDFILE"
"""


class PrivateLibvirtd:
    """Paths and lifecycle of one testbed's libvirtd (``root`` is ``<testbed>/libvirt``)."""

    def __init__(self, root: Path, logs: Path, cache: Path, netns: str, sock_dir: Path):
        self.root = root
        self.logs = logs
        self.cache = cache
        self.netns = netns
        self.sock_dir = sock_dir

    @property
    def socket(self) -> Path:
        return self.sock_dir / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    def prepare(self) -> None:
        """Write the configuration; nothing runs yet."""
        # The packaged daemon expects these to exist (the network driver writes dnsmasq/*.macs
        # even for networks without dnsmasq).
        for sub in ("etc/qemu/networks", "lib/images", "lib/boot", "lib/dnsmasq", "lib/qemu/channel"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.sock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The longest socket libvirtd makes there: sun_path holds 107 bytes and a NUL.
        if len(str(self.sock_dir / "libvirt-admin-sock").encode()) > 107:
            raise FlatbedError(f"{self.sock_dir}: too long for libvirtd's sockets")
        (self.logs / "libvirt/qemu").mkdir(parents=True, exist_ok=True)
        self.cache.mkdir(parents=True, exist_ok=True)
        (self.root / "etc/qemu.conf").write_text(QEMU_CONF)
        (self.root / "etc/libvirtd.conf").write_text(
            LIBVIRTD_CONF.format(sock_dir=self.sock_dir, log=self.logs / "libvirtd.log"))

    def start(self) -> int:
        """Start libvirtd in the namespace; return its pid (the daemon runs in the foreground)."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "FB_ETC": str(self.root / "etc"), "FB_LIB": str(self.root / "lib"),
               "FB_LOG": str(self.logs / "libvirt"), "FB_CACHE": str(self.cache),
               "FB_PIDFILE": str(self.sock_dir / "libvirtd.pid")}
        with open(self.logs / "libvirtd.stderr.log", "ab") as err:
            proc = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{self.netns}", "--",
                 "unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", LAUNCHER],
                stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        return proc.pid

    def wait_ready(self, pid: int, timeout: float = 60) -> None:
        """Until the socket answers; the first connection also runs QEMU's capability probe."""
        import libvirt

        def ready() -> bool:
            if not procs.alive(pid):
                raise FlatbedError(f"libvirtd exited during start-up; see {self.logs / 'libvirtd.stderr.log'} "
                                   f"and {self.logs / 'libvirtd.log'}")
            if not self.socket.exists():
                return False
            try:
                conn = libvirt.open(self.uri)
            except libvirt.libvirtError:
                return False
            try:
                conn.getCapabilities()
            finally:
                conn.close()
            return True

        wait_until(ready, timeout=timeout, interval=0.3, what=f"libvirtd in namespace {self.netns} to answer")

    @staticmethod
    def stop(pid: int, timeout: float = 20) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``; True when it had to be killed."""
        if not procs.alive(pid):
            return False
        procs.send(pid, signal.SIGTERM)
        try:
            wait_until(lambda: not procs.alive(pid), timeout=timeout, what=f"libvirtd (pid {pid}) to exit")
            return False
        except FlatbedError:
            procs.send(pid, signal.SIGKILL)
            return True


