"""Pure input hashing for cached images.

An image is reused only when every input that could change its bytes is unchanged, so the hash
covers the builder's recipe version, the package set with resolved versions, the suite, the mirror
and the content of every file that is baked in. Nothing here touches the system, so the rules are
unit-testable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

# Length of the hash prefix used in cache directory names (``<kind>-<hash16>``).
SHORT = 16


def input_hash(
    recipe: str,
    packages: Mapping[str, str],
    suite: str,
    mirror: str,
    files: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> str:
    """Return the hex sha256 digest of an image's inputs.

    ``packages`` maps package name to resolved version; ``files`` maps a relative path to the
    sha256 of its content (see :func:`hash_tree`); ``extra`` holds any other builder setting.
    Mappings are serialised with sorted keys, so package order does not matter while any version,
    mirror or file-content change does.
    """
    doc = {
        "recipe": recipe,
        "packages": dict(sorted(packages.items())),
        "suite": suite,
        # A trailing slash does not change what debootstrap fetches.
        "mirror": mirror.rstrip("/"),
        "files": dict(sorted((files or {}).items())),
        "extra": dict(sorted((extra or {}).items())),
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def hash_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def hash_file(path: Path) -> str:
    """Hex sha256 of a file's content, read in chunks (cirros disk images are tens of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_tree(root: Path) -> dict[str, str]:
    """Map every regular file and symlink under ``root`` (relative path) to a content digest.

    The file mode's executable bit is part of the digest because the guest's scripts only run
    when executable; symlinks hash their target. Python caches are ignored.
    """
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "link:" + hash_bytes(str(path.readlink()).encode())
        elif path.is_file():
            exe = "x" if path.stat().st_mode & 0o111 else "-"
            out[rel] = exe + hash_file(path)
    return out
