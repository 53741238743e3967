"""What the host's own network namespace looks like, and what changed: the isolation audit.

Testbeds live in namespaces (and, with ``--libvirt-uri qemu:///system``, in that libvirt) of their
own; the host's own namespace must not gain or lose iptables/ebtables rules, links, addresses or
routes, and ``/dev/kvm`` must keep its owner and mode. A view is a set of one-line items; a change
that names a run id (``fb`` + 6 hex) belongs to that run, and one of a kept testbed that uses the
host's libvirt by design (its bridges, libvirt's rules for them) is accounted for, not a leak.

Reading only: ``iptables-save``, ``ebtables -L``, ``ip -o`` and ``stat``.
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address
from pathlib import Path

RUN_TAG = re.compile(r"\bfb[0-9a-f]{6}")
KVM = Path("/dev/kvm")
# Route attributes that change by themselves (router advertisements age, cache entries).
VOLATILE = re.compile(r"\s+(expires \S+|hoplimit \d+|pref \S+)")


@dataclass(frozen=True)
class HostView:
    items: frozenset[str]   # "iptables filter: -A ...", "link eth0", "address ...", "route ...", "/dev/kvm ..."


def _lines(argv: list[str]) -> list[str]:
    if shutil.which(argv[0]) is None:
        return []
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.stdout.splitlines() if proc.returncode == 0 else []


def rules() -> set[str]:
    """Every iptables and ebtables rule and chain of the host's namespace, without counters."""
    found = set()
    table = ""
    for line in _lines(["iptables-save"]):
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(("-A", ":")):
            found.add(f"iptables {table}: " + re.sub(r" \[\d+:\d+\]$", "", line))
    for table in ("filter", "nat", "broute"):
        chain = ""
        for line in _lines(["ebtables", "-t", table, "-L"]):
            if line.startswith("Bridge chain:"):
                chain = line.split(",")[0].split(":", 1)[1].strip()
                found.add(f"ebtables {table}: chain {chain}")
            elif line.startswith("-"):
                found.add(f"ebtables {table} {chain}: {line.strip()}")
    return found


def network() -> set[str]:
    """Links, addresses and routes (IPv4 and IPv6, every table) of the host's namespace."""
    found = {f"link {line.split(':')[1].strip().split('@')[0]}" for line in _lines(["ip", "-o", "link", "show"])}
    for line in _lines(["ip", "-o", "addr", "show"]):
        words = line.split()
        found.add(f"address {words[3]} on {words[1]}")
    for family in ("-4", "-6"):
        for line in _lines(["ip", family, "-o", "route", "show", "table", "all"]):
            found.add(f"route {VOLATILE.sub('', line).strip()}")
    return found


def kvm() -> set[str]:
    try:
        info = KVM.stat()
    except OSError:
        return set()
    return {f"/dev/kvm owner {info.st_uid}:{info.st_gid} mode {stat.filemode(info.st_mode)}"}


def look() -> HostView:
    return HostView(frozenset(rules() | network() | kvm()))


def changes(before: HostView, after: HostView) -> list[str]:
    """What appeared (``+``) and what went (``-``) between two views."""
    return ([f"+ {item}" for item in sorted(after.items - before.items)]
            + [f"- {item}" for item in sorted(before.items - after.items)])


def owner(change: str) -> str | None:
    """The run id a change names, or None."""
    found = RUN_TAG.search(change)
    return found.group(0) if found else None


def judge(change: str, ours: set[str], host_libvirt_kept: set[str]) -> str | None:
    """Why a change is not a leak of ours (another run's; a kept testbed that uses the host's
    libvirt by design), or None when it is one."""
    run = owner(change)
    if run is not None and run not in ours:
        return f"run {run} is not this session's"
    if run is not None and run in host_libvirt_kept:
        return f"kept testbed {run} uses the host's libvirt (its bridges are this host's by design)"
    if run is None and host_libvirt_kept and "LIBVIRT_" in change:
        return "the host's libvirt's own chains, for the kept testbeds that use it"
    return None


def route_is_testbeds(address: str, testbed_subnets: list[IPv4Network]) -> str | None:
    """How the host's namespace would reach ``address``: the route ``ip route get`` picks, when it
    goes through a link in the testbed's subnets (a leak: the testbed answers the host), else None.
    Nothing is sent: a probe could leave the machine by the default route."""
    lines = _lines(["ip", "-o", "route", "get", address])
    if not lines:
        return None
    words = lines[0].split()
    source = words[words.index("src") + 1] if "src" in words else None
    device = words[words.index("dev") + 1] if "dev" in words else ""
    local = source is not None and isinstance(ip_address(source), IPv4Address) and \
        any(IPv4Address(source) in net for net in testbed_subnets)
    return lines[0].strip() if local or RUN_TAG.match(device) else None


def keys_left(state_root: Path) -> list[str]:
    """SSH key pairs of removed testbeds (a directory without a state file) under ``state_root``."""
    left = []
    for entry in sorted(state_root.iterdir()) if state_root.is_dir() else []:
        if RUN_TAG.fullmatch(entry.name) and not (entry / "state.json").exists():
            left += [str(key) for key in sorted(entry.glob("ssh/id_*"))]
    return left
