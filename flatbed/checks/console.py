"""A guest's console log (the serial port qemu writes to ``console.log`` in its instance directory),
read on its compute, and waiters on what it shows.
"""

from __future__ import annotations

import re

from flatbed.checks.timeouts import LEASE_TIMEOUT, SSH_TIMEOUT
from flatbed.cloud import Guest
from flatbed.follow import follow

# Both udhcpc wordings: cirros 0.3's busybox 1.18 and busybox 1.2x/1.35 (cirros 0.4+, our guest).
LEASE_LINE = r"(?im)^(?:udhcpc: )?lease of {ip} obtained(?: from \S+)?, lease time (\d+)\s*$"
DROPBEAR_STARTED = r"(?m)^Starting dropbear sshd: .*OK"


def console(guest: Guest) -> str:
    """The console log, with the serial port's CRLF line ends as plain newlines."""
    return guest.node.read_file(guest.console_log).replace("\r\n", "\n")


def wait_for_console(guest: Guest, pattern: str, *, timeout: float, what: str, since: int = 0) -> re.Match[str]:
    """Wait until the console log matches ``pattern``, following it as qemu writes it (``tail -F``
    on the compute, :mod:`flatbed.follow`): the wait ends with the line, nothing is read twice.
    ``since``: only the text from that offset of :func:`console`'s text on (a boot after a reset).
    The timeout shows the console's tail."""
    with follow(guest.node, guest.console_log, lasting=timeout + 10) as log:
        return log.wait_for(pattern, timeout=timeout, what=f"{guest.name}: {what}", start=since)


def wait_for_lease(guest: Guest) -> re.Match[str]:
    """Until udhcpc's lease of the guest's address shows; group 1 is the lease time."""
    return wait_for_console(guest, LEASE_LINE.format(ip=re.escape(guest.ip)), timeout=LEASE_TIMEOUT,
                            what=f"the DHCP lease of {guest.ip} on the console")


def wait_for_sshd(guest: Guest) -> None:
    """Until the guest's dropbear is up: its console shows dropbear's start (after cloud-setup)."""
    wait_for_console(guest, DROPBEAR_STARTED, timeout=SSH_TIMEOUT,
                     what="dropbear's start on the console (it follows cloud-setup)")
