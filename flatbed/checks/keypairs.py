"""Key pairs the Essex way: ``nova keypair-add NAME`` on the controller, the private key saved there.

A guest booted with ``--key-name`` gets the public key from the metadata service (cloud-setup
installs it for cirros); :func:`private_key` hands the saved key to paramiko for the guest shell.
"""

from __future__ import annotations

import io
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flatbed.node import Node

if TYPE_CHECKING:
    import paramiko


@dataclass(frozen=True)
class KeyPair:
    """A key pair made with ``nova keypair-add``; the private key stays on the controller."""

    name: str
    private_key_path: str
    public_key: str


def keypair_add(controller: Node, name: str) -> KeyPair:
    """``nova keypair-add NAME`` (nova-api generates it) with the private key saved as Essex users did."""
    path = f"/root/{name}.pem"
    controller.check(f"umask 077 && nova keypair-add {shlex.quote(name)} > {shlex.quote(path)}")
    public_key = controller.check(["ssh-keygen", "-y", "-f", path]).strip()
    return KeyPair(name=name, private_key_path=path, public_key=public_key)


def keypair_delete(controller: Node, key: KeyPair) -> None:
    controller.check(["nova", "keypair-delete", key.name])
    controller.run(["rm", "-f", key.private_key_path])


def private_key(controller: Node, key: KeyPair) -> paramiko.PKey:
    """The saved private key, read from the controller, as paramiko takes it."""
    import paramiko

    return paramiko.RSAKey.from_private_key(io.StringIO(controller.read_file(key.private_key_path)))
