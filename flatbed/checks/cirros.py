"""What a cirros console log says about the stack, whichever cirros generation booted.

The same facts are asserted for every cirros: the DHCP lease (address and lease time), the
metadata service answering at the first try with the instance's id, the id the guest reports
at the end of its boot, and an SSH host key generated on first boot. Each generation prints
them in its own words (reference §12); the generation is chosen from the console itself:

- ``0.3.0`` (0.3.0, and flatbed's guest): busybox 1.18's ``Lease of …`` (flatbed's guest: busybox
  1.35's ``udhcpc: lease of … from …``); ``cloud-setup:`` at 1/30 tries; cloud-final's
  ``  instance-id:``; ``Starting dropbear sshd: generating … OK``.
- ``0.3.1`` (0.3.1–0.3.4): busybox 1.20's ``Lease of …``; the ec2 datasource at 1/20 tries; the
  ``=== datasource: ec2 net ===`` block; buildroot's dropbear line, as 0.3.0.
- ``0.3.5`` (0.3.5–0.4.x): as 0.3.1 (busybox 1.20/1.23), the host key in the
  ``=== sshd host keys ===`` block.
- ``0.5`` (0.5.x): busybox 1.29's ``udhcpc: lease of …``; otherwise as 0.3.5.
- ``0.6`` (0.6 and later): dhcpcd's ``eth0: leased … for N seconds``; otherwise as 0.3.5.

0.3.1 and later print ``=== cirros: current=<version> ... ===`` (cirros-status, near the end of
the boot); 0.3.0 has no such line and is known by its ``cloud-setup: checking`` line. Pure: no
I/O, regexes per line (multi-line only for the datasource and host-key blocks).

API: :func:`check_console` (console, :class:`Expected`) -> :class:`Facts` or the first
:class:`Mismatch`; :func:`read_facts` (console) -> what it shows, unchecked; :func:`generation_of`
(console) -> :class:`Generation` or None; :func:`first_lease` (console) -> the first lease in any
generation's wording, for waiting on a lease before the generation is known; :func:`leases`
(console) -> every lease line; :func:`host_keys` (console) -> the host keys generated on first boot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MD = re.escape("http://169.254.169.254")


@dataclass(frozen=True)
class Line:
    """One console line (or block) carrying a fact. ``near`` finds what a console shows instead
    when ``pattern`` does not match, for the mismatch message."""

    what: str
    pattern: str
    near: str


# --- the lines, by the software that prints them ---------------------------------------------

# busybox udhcpc's lease line: 1.18-1.27 (bb_info_msg), 1.28-1.32 (applet prefix), 1.33+ (server too).
LEASE_BUSYBOX_118 = Line("lease (busybox 1.18-1.27 udhcpc)",
                         r"^Lease of (?P<ip>\S+) obtained, lease time (?P<seconds>\d+)$", r"(?i)lease")
LEASE_BUSYBOX_128 = Line("lease (busybox 1.28-1.32 udhcpc)",
                         r"^udhcpc: lease of (?P<ip>\S+) obtained, lease time (?P<seconds>\d+)$", r"(?i)lease")
LEASE_BUSYBOX_133 = Line("lease (busybox 1.33+ udhcpc)",
                         r"^udhcpc: lease of (?P<ip>\S+) obtained from \S+, lease time (?P<seconds>\d+)$",
                         r"(?i)lease")
LEASE_DHCPCD = Line("lease (dhcpcd)", r"^\w+: leased (?P<ip>\S+) for (?P<seconds>\d+) seconds$", r"(?i)lease")

# cirros 0.3.0's cloud-setup (/usr/share/cloud/functions: 30 tries, 1 s apart).
CLOUD_SETUP_CHECK = Line("metadata check (cloud-setup)",
                         rf"^cloud-setup: checking {MD}/2009-04-04/meta-data/instance-id$", r"checking http")
CLOUD_SETUP_OK = Line("metadata success (cloud-setup)",
                      r"^cloud-setup: successful after (?P<tries>\d+)/30 tries: up [\d.]+\. iid=(?P<iid>\S+)$",
                      r"cloud-setup: (?:successful|failed)")
# cloud-final's summary: "  instance-id: i-00000009".
CLOUD_FINAL_ID = Line("instance-id (cloud-final)", r"^  instance-id: (?P<iid>\S*)$", r"instance-id")
# cirros-ds's ec2 datasource (0.3.1+: 20 tries, 2 s apart; the log line omits /meta-data).
EC2_CHECK = Line("metadata check (ec2 datasource)", rf"^checking {MD}/2009-04-04/instance-id$", r"checking http")
EC2_OK = Line("metadata success (ec2 datasource)",
              r"^successful after (?P<tries>\d+)/20 tries: up [\d.]+\. iid=(?P<iid>\S+)$",
              r"^(?:successful after|failed \d+/\d+|failed to read iid)")
# cirros-status's datasource block: its first line is the instance id.
DATASOURCE_ID = Line("instance-id (=== datasource: ec2 net ===)",
                     r"^=== datasource: ec2 net ===\ninstance-id: (?P<iid>\S*)$", r"=== datasource:")
# buildroot's S50dropbear: "generating <type> key... " per key it creates (first boot), then OK.
DROPBEAR_KEYS = Line("dropbear host keys generated",
                     r"^Starting dropbear sshd: (?P<keys>(?:generating \w+ key\.\.\. )+)OK$", r"dropbear")
# cirros-status (0.3.5+): the host keys dropbear generated, one public key per line.
HOST_KEYS_BLOCK = Line("=== sshd host keys ===",
                       r"^-----BEGIN SSH HOST KEY KEYS-----\n(?P<keys>(?:(?:ssh-\w+|ecdsa-sha2-\S+) AAAA\S+.*\n)+)"
                       r"-----END SSH HOST KEY KEYS-----$", r"HOST KEY|dropbear")

# "=== cirros: current=0.4.0 uptime=4.83 ===" (also "latest=" when it could ask the internet).
VERSION_LINE = re.compile(r"(?m)^=== cirros: current=(?P<version>\d+(?:\.\d+)+)\S*(?: \w+=\S+)* ===$")


@dataclass(frozen=True)
class Generation:
    """How one range of cirros releases prints the facts (first matching lease wording wins)."""

    name: str
    since: tuple[int, ...]           # first version of the range
    leases: tuple[Line, ...]
    metadata_check: Line
    metadata_ok: Line
    max_tries: int
    instance_id: Line
    host_keys: Line


_EC2 = {"metadata_check": EC2_CHECK, "metadata_ok": EC2_OK, "max_tries": 20, "instance_id": DATASOURCE_ID}
GENERATIONS = (
    # flatbed's guest is this generation with busybox 1.35's udhcpc.
    Generation("0.3.0", (0, 3, 0), (LEASE_BUSYBOX_118, LEASE_BUSYBOX_133), CLOUD_SETUP_CHECK, CLOUD_SETUP_OK, 30,
               CLOUD_FINAL_ID, DROPBEAR_KEYS),
    Generation("0.3.1", (0, 3, 1), (LEASE_BUSYBOX_118,), host_keys=DROPBEAR_KEYS, **_EC2),
    Generation("0.3.5", (0, 3, 5), (LEASE_BUSYBOX_118,), host_keys=HOST_KEYS_BLOCK, **_EC2),
    Generation("0.5", (0, 5, 0), (LEASE_BUSYBOX_128,), host_keys=HOST_KEYS_BLOCK, **_EC2),
    Generation("0.6", (0, 6, 0), (LEASE_DHCPCD,), host_keys=HOST_KEYS_BLOCK, **_EC2),
)


@dataclass(frozen=True)
class Expected:
    """The facts a console must show, derived by the test (never read from the stack)."""

    ip: str
    lease_time: int
    ec2_id: str  # i-%08x


@dataclass(frozen=True)
class Facts:
    """What the console shows. ``version`` is cirros-status's (None for the 0.3.0 generation)."""

    generation: str
    version: str | None
    lease_ip: str
    lease_time: int
    metadata_tries: int
    metadata_iid: str
    reported_iid: str
    host_keys: int


@dataclass(frozen=True)
class Mismatch:
    """The first fact that is missing or wrong. ``final``: a line was there with a wrong value
    (waiting longer cannot help); otherwise the line is not (yet) on the console."""

    fact: str
    expected: str
    found: str
    generation: str | None
    final: bool

    def __str__(self) -> str:
        gen = f"cirros {self.generation} generation" if self.generation else "cirros generation unknown"
        return f"{gen}: {self.fact}: expected {self.expected}, found {self.found}"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def generation_of(console: str) -> Generation | None:
    """The generation the console shows: by cirros-status's version line, else 0.3.0's
    ``cloud-setup: checking`` line; None while neither is there."""
    match = VERSION_LINE.search(console)
    if match:
        version = _version(match.group("version"))
        fitting = [g for g in GENERATIONS if g.since <= version]
        return fitting[-1] if fitting else None
    if re.search(CLOUD_SETUP_CHECK.pattern, console, re.M):
        return GENERATIONS[0]
    return None


def _search(line: Line, console: str) -> re.Match[str] | None:
    return re.search(line.pattern, console, re.M)


def _near(line: Line, console: str) -> str:
    found = [text for text in console.splitlines() if re.search(line.near, text)]
    return f"{found[-1]!r}" if found else "no such line"


def _missing(fact: str, line: Line, console: str, gen: Generation | None) -> Mismatch:
    return Mismatch(fact, f"/{line.pattern}/", _near(line, console), gen.name if gen else None, final=False)


ANY_LEASE = (LEASE_BUSYBOX_118, LEASE_BUSYBOX_128, LEASE_BUSYBOX_133, LEASE_DHCPCD)


def leases(console: str) -> list[tuple[str, int, str]]:
    """(address, lease seconds, the line) of every lease line in any generation's wording, in order."""
    console = console.replace("\r\n", "\n")
    hits = [m for line in ANY_LEASE for m in re.finditer(line.pattern, console, re.M)]
    return [(m.group("ip"), int(m.group("seconds")), m.group(0)) for m in sorted(hits, key=lambda m: m.start())]


def first_lease(console: str) -> tuple[str, int, str] | None:
    """(address, lease seconds, the line) of the first lease line in any generation's wording."""
    found = leases(console)
    return found[0] if found else None


def host_keys(console: str) -> int | None:
    """How many SSH host keys the console shows generated on first boot, in its generation's words
    (buildroot's dropbear line, or cirros-status' host key block); None while it shows none of them.
    A dropbear start that generated no key ("Starting dropbear sshd: OK") is not a first boot's."""
    console = console.replace("\r\n", "\n")
    gen = generation_of(console)
    for line in (gen.host_keys,) if gen else (DROPBEAR_KEYS, HOST_KEYS_BLOCK):
        match = _search(line, console)
        if match:
            return _count_keys_of(line, match)
    return None


def read_facts(console: str) -> Facts | Mismatch:
    """The facts the console shows in its generation's words, unchecked; or the first line missing."""
    console = console.replace("\r\n", "\n")
    gen = generation_of(console)
    if gen is None:
        return Mismatch("generation", "'=== cirros: current=<version> ===' or 0.3.0's 'cloud-setup: checking'",
                        "neither", None, final=False)
    leases = [m for m in (_search(line, console) for line in gen.leases) if m]
    if not leases:
        return _missing("lease", gen.leases[0], console, gen)
    lease = min(leases, key=lambda m: m.start())
    if not _search(gen.metadata_check, console):
        return _missing("metadata check", gen.metadata_check, console, gen)
    ok = _search(gen.metadata_ok, console)
    if not ok:
        return _missing("metadata", gen.metadata_ok, console, gen)
    reported = _search(gen.instance_id, console)
    if not reported:
        return _missing("instance-id reported", gen.instance_id, console, gen)
    keys = _search(gen.host_keys, console)
    if not keys:
        return _missing("host key", gen.host_keys, console, gen)
    version = VERSION_LINE.search(console)
    return Facts(generation=gen.name, version=version.group("version") if version else None,
                 lease_ip=lease.group("ip"), lease_time=int(lease.group("seconds")),
                 metadata_tries=int(ok.group("tries")), metadata_iid=ok.group("iid"),
                 reported_iid=reported.group("iid"), host_keys=_count_keys(gen, keys))


def _count_keys(gen: Generation, match: re.Match[str]) -> int:
    return _count_keys_of(gen.host_keys, match)


def _count_keys_of(line: Line, match: re.Match[str]) -> int:
    if line is HOST_KEYS_BLOCK:
        return len(match.group("keys").splitlines())
    return match.group("keys").count("generating ")


def check_console(console: str, expected: Expected) -> Facts | Mismatch:
    """The console's facts when they are the expected ones, else the first that is not (in boot order)."""
    facts = read_facts(console)
    if isinstance(facts, Mismatch):
        return facts
    comparisons = (
        ("lease address", expected.ip, facts.lease_ip),
        ("lease time", str(expected.lease_time), str(facts.lease_time)),
        ("metadata tries", "1", str(facts.metadata_tries)),
        ("metadata instance-id", expected.ec2_id, facts.metadata_iid),
        ("instance-id reported", expected.ec2_id, facts.reported_iid),
    )
    for fact, want, got in comparisons:
        if want != got:
            return Mismatch(fact, want, got, facts.generation, final=True)
    return facts
