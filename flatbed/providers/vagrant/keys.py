"""The run's SSH key pair (ed25519, made here; the Vagrant insecure key is never used)."""

from __future__ import annotations

import os
from pathlib import Path


def make_ssh_key(path: Path, comment: str) -> str:
    """A fresh key pair at ``path`` (and ``path.pub``) unless one is there; the public key line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private)
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        path.with_suffix(".pub").write_text(f"{public.decode()} {comment}\n")
    return path.with_suffix(".pub").read_text().strip()
