"""Does libvirt answer, and what CPU would a VM get? Asked of an existing libvirt (``--libvirt-uri``)
or, as a testbed would use it, of a private libvirtd started for the question only.

The throw-away daemon is the VM provider's own (:class:`PrivateLibvirtd`: its configuration and
launcher) in a network namespace of its own that nobody else sees and that goes with it; its
directories (sockets included) are temporary, its QEMU capability cache the shared one. ``setpriv --pdeathsig``
ends it with ``flatbed check`` even if that is killed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from flatbed.images.cache import cache_dir
from flatbed.readiness.host import LibvirtAnswer

ANSWER_TIMEOUT = 60.0  # first start on a host: QEMU's capability probe, measured 0.4-8.6 s


def ask(uri: str | None) -> LibvirtAnswer:
    try:
        import libvirt
    except ImportError as e:
        return LibvirtAnswer(error=f"libvirt-python is not importable ({e})")
    if uri:
        return _ask_uri(libvirt, uri)
    if not shutil.which("libvirtd"):
        return LibvirtAnswer(error="libvirtd is not installed")
    with tempfile.TemporaryDirectory(prefix="flatbed-check-") as tmp:
        return _ask_private(libvirt, Path(tmp))


def _ask_uri(libvirt, uri: str) -> LibvirtAnswer:  # noqa: ANN001 - the libvirt module
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as e:
        return LibvirtAnswer(error=f"{uri}: {e.get_error_message()}")
    try:
        return describe(libvirt, conn)
    finally:
        conn.close()


def _ask_private(libvirt, tmp: Path) -> LibvirtAnswer:  # noqa: ANN001
    from flatbed.providers.vagrant.libvirtd import LAUNCHER, PrivateLibvirtd

    sock_dir = tmp / "run"  # short enough for sun_path under /tmp
    daemon = PrivateLibvirtd(tmp / "libvirt", tmp / "logs", cache_dir() / "libvirt", "", sock_dir)
    daemon.prepare()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "FB_ETC": str(daemon.root / "etc"), "FB_LIB": str(daemon.root / "lib"),
           "FB_LOG": str(daemon.logs / "libvirt"), "FB_CACHE": str(daemon.cache),
           "FB_PIDFILE": str(sock_dir / "libvirtd.pid")}
    argv = ["setpriv", "--pdeathsig", "KILL", "--", "unshare", "--net", "--mount", "--propagation", "private",
            "--", "/bin/sh", "-c", LAUNCHER]
    with open(daemon.logs / "stderr.log", "wb") as err:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            if proc.poll() is not None:
                return LibvirtAnswer(error=f"a private libvirtd exited {proc.returncode} at start: "
                                           f"{_last_line(daemon.logs)}")
            if daemon.socket.exists():
                try:
                    conn = libvirt.open(daemon.uri)
                except libvirt.libvirtError:
                    conn = None
                if conn is not None:
                    try:
                        return describe(libvirt, conn)
                    finally:
                        conn.close()
            if time.monotonic() > deadline:
                return LibvirtAnswer(error=f"a private libvirtd did not answer within {ANSWER_TIMEOUT:g} s")
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def describe(libvirt, conn) -> LibvirtAnswer:  # noqa: ANN001
    """Version, x86_64 domain types, and per type whether its host-model CPU offers svm or vmx."""
    version = conn.getLibVersion()
    types = tuple(sorted(set(re.findall(r"<domain type='(\w+)'", conn.getCapabilities()))))
    nested = {}
    for virttype in types:
        try:
            caps = conn.getDomainCapabilities(None, "x86_64", None, virttype)
            expanded = conn.baselineHypervisorCPU(None, "x86_64", None, virttype, [host_model_cpu(caps)],
                                                  libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES)
        except (libvirt.libvirtError, ValueError):
            continue
        nested[virttype] = offers_virtualization(expanded)
    major, minor, micro = version // 1000000, version // 1000 % 1000, version % 1000
    return LibvirtAnswer(version=f"{major}.{minor}.{micro}", domain_types=types, nested_cpu=nested)


def host_model_cpu(domain_capabilities: str) -> str:
    """The ``host-model`` CPU of ``virsh domcapabilities`` as a CPU definition to expand (pure)."""
    match = re.search(r"<mode name='host-model' supported='yes'>(.*?)</mode>", domain_capabilities, re.S)
    if not match:
        raise ValueError("no host-model CPU")
    body = match.group(1).replace(" fallback='forbid'", "")
    return f"<cpu mode='custom' match='exact'>{body}</cpu>"


def offers_virtualization(cpu_xml: str) -> bool:
    """Whether an expanded CPU definition requires svm (AMD) or vmx (Intel) (pure)."""
    return bool(re.search(r"<feature policy='require' name='(svm|vmx)'/>", cpu_xml))


def _last_line(logs: Path) -> str:
    for name in ("stderr.log", "libvirtd.log"):
        try:
            lines = (logs / name).read_text(errors="replace").strip().splitlines()
        except OSError:
            continue
        if lines:
            return lines[-1][:200]
    return "no output"
