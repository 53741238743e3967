"""ebtables counters on a compute: the witnesses of libvirt's nwfilters (nova-base's anti-spoofing).

libvirt renders a NIC's nwfilter as ebtables chains in the ``nat`` table named after its tap:
``I-<tap>-mac`` (no-mac-spoofing), ``I-<tap>-ipv4-ip`` (no-ip-spoofing), ``I-<tap>-arp-mac`` and
``I-<tap>-arp-ip`` (no-arp-spoofing) for frames the guest sends, each ending in ``-j DROP``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flatbed.node import Node

_COUNTED = re.compile(r"^(?P<rule>.+?) , pcnt = (?P<packets>\d+) -- bcnt = \d+$")


def parse_counters(listing: str) -> dict[str, int]:
    """``ebtables -L --Lc`` of one chain as {rule: packets}."""
    counters = {}
    for line in listing.splitlines():
        found = _COUNTED.match(line.strip())
        if found:
            counters[found.group("rule")] = int(found.group("packets"))
    return counters


def counters(node: Node, chain: str, table: str = "nat") -> dict[str, int]:
    return parse_counters(node.check(["ebtables", "-t", table, "-L", chain, "--Lc"]))


def outgoing_chain(tap: str, check: str) -> str:
    """The chain libvirt made on ``tap`` for a check of frames from the guest: mac, ipv4-ip, arp-ip..."""
    return f"I-{tap}-{check}"


@contextmanager
def drops(node: Node, chain: str) -> Iterator[Callable[[], int]]:
    """Inside the block, ``dropped()`` is how many frames the chain's ``-j DROP`` took since it began."""
    before = counters(node, chain).get("-j DROP", 0)

    def dropped() -> int:
        found = counters(node, chain)
        assert "-j DROP" in found, f"{node.name}: ebtables chain {chain} has no DROP rule: {found}"
        return found["-j DROP"] - before

    yield dropped
