"""sd_notify for the nova services: tell systemd a ``Type=notify`` unit is ready.

``systemctl start nova-network`` then returns only once the service has set up its host
(bridge, iptables, dnsmasq), so provisioning can start the next service in a known order — the
order the iptables listing shows (nova-network applies after nova-api).
"""

from __future__ import annotations

import os
import socket


def notify(state: str = "READY=1") -> bool:
    """Send ``state`` to ``$NOTIFY_SOCKET``; False (and nothing sent) when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True
