"""The host's mount table, read from ``/proc/self/mountinfo`` here and nowhere else."""

from __future__ import annotations

import os
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
# mountinfo writes space, tab, newline and backslash in paths as octal escapes.
_ESCAPES = (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\"))


def unescape(field: str) -> str:
    for code, char in _ESCAPES:
        field = field.replace(code, char)
    return field


def parse_mount_points(text: str) -> list[Path]:
    """The mount points (field 5) of a mountinfo text, unescaped (pure)."""
    return [Path(unescape(line.split()[4])) for line in text.splitlines() if line.strip()]


def mount_points() -> list[Path]:
    """Every mount point of this process's mount namespace."""
    return parse_mount_points(MOUNTINFO.read_text())


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path`` (deepest first, the order to unmount them in)."""
    base = os.path.realpath(path)
    found = [p for p in mount_points() if str(p) == base or str(p).startswith(base + "/")]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)
