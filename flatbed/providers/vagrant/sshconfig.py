"""``vagrant ssh-config``, read with paramiko's SSH config parser."""

from __future__ import annotations

import io

import paramiko

from flatbed.errors import FlatbedError
from flatbed.providers.vagrant.record import SSHRecord


def parse_ssh_config(text: str, hosts: list[str], default_identity: str) -> dict[str, SSHRecord]:
    """The login of each of ``hosts`` in ``vagrant ssh-config`` output (several ``Host`` blocks)."""
    config = paramiko.SSHConfig.from_file(io.StringIO(text))
    known = config.get_hostnames()
    found = {}
    for host in hosts:
        if host not in known:
            raise FlatbedError(f"vagrant ssh-config has no entry for {host}")
        entry = config.lookup(host)
        identities = entry.get("identityfile") or [default_identity]
        found[host] = SSHRecord(host=entry["hostname"], port=int(entry.get("port", 22)),
                                user=entry.get("user", "root"), identity=identities[0])
    return found
