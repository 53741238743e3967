"""A guest's console log (the serial port qemu writes to ``console.log`` in its instance directory),
read on its compute, and waiters on what it shows.

What a console proves about the stack are the lines fed by real answers: the lease (address and
lease time from dnsmasq), the metadata service's answer at the first try with the instance's EC2
id, the id the guest reports, and the host keys it generated. :func:`wait_for_facts` checks those
in the words of whichever cirros generation booted (:mod:`flatbed.checks.cirros`) against what the
rules derive (:func:`expected_facts`); the static lines our own guest scripts print are only the
document's wording (``expect.console_network``/``console_metadata``, for the 0.3.0 generation).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from flatbed.checks import cirros
from flatbed.checks.identity import identity_of, rule_address
from flatbed.checks.timeouts import CLOUD_FINAL_TIMEOUT, LEASE_TIMEOUT, SSH_TIMEOUT
from flatbed.cloud import Guest
from flatbed.errors import FlatbedError
from flatbed.follow import follow

# The generation the document's console shows (cirros 0.3.0; flatbed's guest is one).
DOCUMENT_GENERATION = cirros.GENERATIONS[0].name

T = TypeVar("T")


def console(guest: Guest) -> str:
    """The console log, with the serial port's CRLF line ends as plain newlines."""
    return guest.node.read_file(guest.console_log).replace("\r\n", "\n")


def tail(guest: Guest, lines: int = 15) -> str:
    return "console tail:\n" + "\n".join(console(guest).splitlines()[-lines:])


def wait_on_console(guest: Guest, check: Callable[[str], T | None], *, timeout: float, what: str,
                    since: int = 0) -> T:
    """Until ``check(console text)`` returns something, following the console as qemu writes it
    (``tail -F`` on the compute, :mod:`flatbed.follow`): checked again whenever new text arrives,
    nothing read twice. ``since``: only the text from that offset on (a boot after a reset)."""
    with follow(guest.node, guest.console_log, lasting=timeout + 10) as log:
        return log.until(check, timeout=timeout, what=f"{guest.name}: {what}", start=since)


def complete_lines(text: str) -> str:
    """The text up to its last newline: a line still being written (``lease time 12`` of ``120``,
    an ``iid=i-0000`` cut short) is not a fact yet."""
    return text[:text.rfind("\n") + 1]


def wait_for_console(guest: Guest, pattern: str, *, timeout: float, what: str, since: int = 0) -> re.Match[str]:
    """Wait until the console log matches ``pattern`` (a multi-line regex); the timeout shows the
    console's tail."""
    return wait_on_console(guest, re.compile(pattern).search, timeout=timeout, what=what, since=since)


def wait_for_lease(guest: Guest) -> tuple[str, int, str]:
    """Until the console shows a DHCP lease of the guest's address, in any cirros generation's
    words: (address, lease seconds, the line)."""
    def leased(text: str) -> tuple[str, int, str] | None:
        return next((lease for lease in cirros.leases(complete_lines(text)) if lease[0] == guest.ip), None)

    return wait_on_console(guest, leased, timeout=LEASE_TIMEOUT, what=f"the DHCP lease of {guest.ip} on the console")


def wait_for_sshd(guest: Guest) -> int:
    """Until the console shows the host keys its sshd generated on first boot (cirros 0.3's dropbear
    line or 0.3.5+'s host key block, after the metadata checks): how many."""
    return wait_on_console(guest, lambda text: cirros.host_keys(complete_lines(text)), timeout=SSH_TIMEOUT,
                           what="sshd's host keys generated on the console (they follow cloud-setup)")


def expected_facts(guest: Guest) -> cirros.Expected:
    """What the guest's console must show, from the rules: its address (the lowest free one), the
    topology's lease time and the EC2 id of its boot order's id."""
    topo = guest.testbed.topology
    lease = int(topo.nova_flags(topo.controller).get("dhcp_lease_time", 120))
    return cirros.Expected(rule_address(guest), lease, identity_of(guest).ec2_id)


def wait_for_facts(guest: Guest, expected: cirros.Expected | None = None,
                   timeout: float = CLOUD_FINAL_TIMEOUT) -> cirros.Facts:
    """Until the console shows the lease, the metadata answer at the first try and the instance id
    it reports (its generation's words), each as expected; AssertionError on the first wrong one."""
    expected = expected or expected_facts(guest)

    def facts(text: str) -> cirros.Facts | None:
        result = cirros.check_console(complete_lines(text), expected)
        if isinstance(result, cirros.Mismatch) and result.final:
            raise AssertionError(f"{guest.name}: {result}\n{tail(guest, 25)}")
        return result if isinstance(result, cirros.Facts) else None

    try:
        return wait_on_console(guest, facts, timeout=timeout,
                               what="the lease, metadata and instance-id lines of its cirros generation")
    except FlatbedError as e:
        raise AssertionError(f"{e}\n{cirros.check_console(console(guest), expected)}") from None


def not_the_documents_wording(guest: Guest) -> str | None:
    """Why the guest's console cannot show the document's (cirros 0.3.0's) wording, or None when it
    can: the reason a test of that wording skips with."""
    gen = cirros.generation_of(console(guest))
    if gen is not None and gen.name == DOCUMENT_GENERATION:
        return None
    return (f"{guest.name} boots cirros generation {gen.name if gen else 'unknown'}: the document's console "
            f"wording is cirros {DOCUMENT_GENERATION}'s (its facts are checked in every generation's words)")
