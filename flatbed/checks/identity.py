"""A guest's identifiers, each derived from its own rule (reference §9), never read from the stack.

- **id**: instances are numbered in creation order from the topology's ``first_instance_id``, so
  the n-th server ``nova boot`` created on a testbed (counted by the guest client,
  :class:`flatbed.cloud.BootLedger`) has id ``first_instance_id + n``. ``nova show`` reports a
  uuid, not the id: the id shows only in the names below.
- **names** of id *n*: ``instance-%08x`` (domain, instance directory), ``i-%08x`` (EC2 id, the
  console and metadata), ``nova-compute-inst-<decimal>`` (iptables chain); they must agree with
  each other wherever they appear (:func:`name_problems`).
- **MAC**: Essex's ``utils.generate_mac_address``: ``fa:16:3e`` and three random octets, the first
  of them in 00–7f (:func:`mac_problem`). Random, so the guest's own MAC is checked against the rule
  and every other place must show the same one; the tap on the compute shows it with ``fe`` as
  first octet (libvirt's doing, :func:`tap_mac`).
- **address**: the lowest free address of the flat range, from ``dhcp_start`` (network + 2) up to
  the last before the broadcast (:func:`lowest_free`).

Each rule returns the problem as one line, or None; ``tests/test_checks_identity.py`` feeds each a
wrong value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flatbed.topology import Topology

if TYPE_CHECKING:
    from flatbed.cloud import Guest

NOVA_COMPUTE = "nova-compute"
ESSEX_MAC = re.compile(r"^fa:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$")


@dataclass(frozen=True)
class Identity:
    """The names of instance ``id``: hex in the instance and EC2 names, decimal in the chain."""

    id: int

    @property
    def instance_name(self) -> str:
        return f"instance-{self.id:08x}"

    @property
    def ec2_id(self) -> str:
        return f"i-{self.id:08x}"

    @property
    def chain(self) -> str:
        return f"{NOVA_COMPUTE}-inst-{self.id}"


def expected_id(topo: Topology, created_before: int) -> int:
    """The id of the server created after ``created_before`` others on a testbed of ``topo``."""
    return topo.first_instance_id + created_before


def name_problems(expected: Identity, seen: Mapping[str, str]) -> list[str]:
    """Each ``where -> name`` of ``seen`` checked against the rule of its kind, recognised by its
    shape (``instance-…``, ``i-…``, ``nova-compute-inst-…``); one line per name that is not ``expected``'s."""
    problems = []
    for where, name in seen.items():
        if name.startswith(f"{NOVA_COMPUTE}-inst-"):
            want, rule = expected.chain, "nova-compute-inst-<decimal id>"
        elif name.startswith("instance-"):
            want, rule = expected.instance_name, "instance-%08x"
        elif name.startswith("i-"):
            want, rule = expected.ec2_id, "i-%08x"
        else:
            problems.append(f"{where}: {name!r} is none of instance-%08x, i-%08x, nova-compute-inst-<id>")
            continue
        if name != want:
            problems.append(f"{where}: {name!r}, but id {expected.id} gives {want!r} ({rule})")
    return problems


def mac_problem(mac: str | None) -> str | None:
    """Why ``mac`` is not one Essex generates (``fa:16:3e`` + [00-7f]:xx:xx), or None."""
    if mac is None:
        return "no MAC"
    if not ESSEX_MAC.match(mac):
        return f"{mac!r} is not fa:16:3e:XX:XX:XX with the 4th octet in 00-7f (Essex's generate_mac_address)"
    return None


def tap_mac(guest_mac: str) -> str:
    """The MAC libvirt gives the guest's tap on the compute: the guest's with ``fe`` as first octet."""
    return "fe" + guest_mac[2:]


def tap_problem(guest_mac: str, tap: str | None) -> str | None:
    """Why ``tap`` is not the tap MAC of ``guest_mac``, or None."""
    want = tap_mac(guest_mac)
    return None if tap == want else f"tap MAC {tap!r}, but guest MAC {guest_mac} gives {want!r} (fe: first octet)"


def flat_range(topo: Topology) -> list[ipaddress.IPv4Address]:
    """The addresses nova hands out, lowest first: ``dhcp_start`` to the last before the broadcast."""
    cidr = topo.flat.cidr
    return [cidr[i] for i in range(2, cidr.num_addresses - 1)]


def lowest_free(topo: Topology, held: Iterable[str], maybe_held: Iterable[str] = ()) -> tuple[str, ...]:
    """The addresses the next guest may get, lowest first: the lowest one neither ``held`` nor
    ``maybe_held``, preceded by each ``maybe_held`` address below it (one that may be back in the
    pool: a deleted guest's that was never leased returns only after ``fixed_ip_disassociate_timeout``).
    Empty when the range is full."""
    taken = {ipaddress.ip_address(a) for a in held}
    maybe = {ipaddress.ip_address(a) for a in maybe_held} - taken
    for address in flat_range(topo):
        if address not in taken and address not in maybe:
            return tuple(str(a) for a in sorted(m for m in maybe if m < address)) + (str(address),)
    return tuple(str(a) for a in sorted(maybe))


def address_problem(candidates: tuple[str, ...], address: str | None) -> str | None:
    """Why ``address`` is not the lowest free one (``candidates`` from :func:`lowest_free`), or None."""
    if address in candidates:
        return None
    want = candidates[0] if len(candidates) == 1 else f"one of {', '.join(candidates)}"
    return f"address {address}, but the lowest free address of the flat range is {want}"


# --- a guest record (flatbed.cloud.Guest) against the rules ------------------------------------

def identity_of(guest: Guest) -> Identity:
    """The names the id rule gives ``guest`` (its id from the boot order the client recorded)."""
    if guest.derived is None:
        raise AssertionError(f"{guest.name}: not created by this process's guest client, so its id and "
                             f"address cannot be derived from the boot order")
    return Identity(guest.derived.id)


def rule_address(guest: Guest) -> str:
    """The address the lowest-free rule gives ``guest``: the one candidate, or the candidate it
    got when lower ones may have come back to the pool; AssertionError when it got another."""
    identity_of(guest)
    candidates = guest.derived.addresses
    problem = address_problem(candidates, guest.ip)
    if problem:
        raise AssertionError(f"{guest.name}: {problem}")
    return candidates[0] if len(candidates) == 1 else guest.ip


def guest_problems(guest: Guest, seen: Mapping[str, str] | None = None) -> list[str]:
    """nova's record of ``guest`` against the rules — its instance name (the id), its MAC (Essex's
    rule), its address (the lowest free) — and each name in ``seen`` (``where -> name``) against its id."""
    ident = identity_of(guest)
    problems = name_problems(ident, {"nova show OS-EXT-SRV-ATTR:instance_name": guest.instance_name,
                                     **(seen or {})})
    problems += [f"nova's MAC of {guest.name}: {p}" for p in [mac_problem(guest.mac)] if p]
    problems += [f"nova's address of {guest.name}: {p}" for p in [address_problem(guest.derived.addresses, guest.ip)]
                 if p]
    return problems


def assert_follows_rules(guest: Guest, seen: Mapping[str, str] | None = None) -> None:
    problems = guest_problems(guest, seen)
    if problems:
        raise AssertionError(f"{guest.name}'s identifiers break their rules:\n" + "\n".join(problems))
