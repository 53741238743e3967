"""A minimal ``newc`` cpio writer and reader for initramfs archives.

Written in Python rather than piping ``find | cpio`` so that owners, modes, the root entry's mode
and device nodes (``/dev/console``) are set explicitly without fakeroot or mknod, and the archive
does not depend on the build user or the files' timestamps. The reader serves the tests (what
the guest really holds: owners, setuid bits) and the cirros disk builder, which lays the guest's
initramfs out on a file system.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DeviceNode:
    """A device node to add to the archive (``path`` relative, without leading slash)."""

    path: str
    mode: int  # including the file type bits, e.g. stat.S_IFCHR | 0o600
    major: int
    minor: int


class NewcWriter:
    """Accumulates newc entries; :meth:`finish` returns the archive bytes with its trailer."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", uid: int = 0, gid: int = 0,
            rdev: tuple[int, int] = (0, 0)) -> None:
        """Append one entry; ``mode`` includes the file type bits."""
        nlink = 2 if stat.S_ISDIR(mode) else 1
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, uid, gid, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._parts.append(header + encoded + _pad(len(header) + len(encoded)))
        self._parts.append(data + _pad(len(data)))
        self._ino += 1

    def finish(self) -> bytes:
        """The archive including the ``TRAILER!!!`` entry."""
        self._ino = 0
        self.add("TRAILER!!!", 0)
        return b"".join(self._parts)


def _pad(length: int) -> bytes:
    # newc aligns both the header+name and the data to 4 bytes.
    return b"\0" * ((4 - length % 4) % 4)


def archive_tree(
    root: Path,
    owners: Mapping[str, tuple[int, int]] | None = None,
    devices: Iterable[DeviceNode] = (),
    root_mode: int = 0o755,
) -> bytes:
    """Pack ``root`` into a newc archive.

    Everything is owned by root except paths (and their subtrees) named in ``owners``
    (relative path -> (uid, gid)). The archive's ``.`` entry gets ``root_mode``: the kernel
    applies it to ``/``, and a non-0755 root makes non-root logins fail ``chdir("/")``.
    """
    owners = owners or {}
    writer = NewcWriter()
    writer.add(".", stat.S_IFDIR | root_mode)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames) + sorted(filenames):
            path = base / name
            rel = path.relative_to(root).as_posix()
            uid, gid = _owner(rel, owners)
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                writer.add(rel, st.st_mode, os.readlink(path).encode(), uid, gid)
            elif stat.S_ISDIR(st.st_mode):
                writer.add(rel, st.st_mode, b"", uid, gid)
            elif stat.S_ISREG(st.st_mode):
                writer.add(rel, st.st_mode, path.read_bytes(), uid, gid)
            else:
                raise ValueError(f"unsupported file type in initramfs tree: {path}")
    for dev in devices:
        writer.add(dev.path, dev.mode, rdev=(dev.major, dev.minor))
    return writer.finish()


def _owner(rel: str, owners: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    for prefix, owner in owners.items():
        if rel == prefix or rel.startswith(prefix + "/"):
            return owner
    return (0, 0)


@dataclass(frozen=True)
class Entry:
    """One member of a newc archive (``name`` relative, without leading slash; ``data`` is a
    symlink's target for links)."""

    name: str
    mode: int
    uid: int
    gid: int
    data: bytes
    rdev: tuple[int, int] = (0, 0)


_HEADER = 110  # "070701" + 13 fields of 8 hex digits


def read_archive(data: bytes) -> Iterator[Entry]:
    """The entries of a newc archive up to its trailer (the ``.`` entry included)."""
    pos = 0
    while True:
        if data[pos:pos + 6] != b"070701":
            raise ValueError(f"not a newc header at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, uid, gid, size, rdev, namesize = fields[1], fields[2], fields[3], fields[6], fields[9:11], fields[11]
        name = data[pos + _HEADER: pos + _HEADER + namesize - 1].decode()
        pos += _HEADER + namesize
        pos += len(_pad(pos))
        if name == "TRAILER!!!":
            return
        body = data[pos: pos + size]
        pos += size + len(_pad(size))
        yield Entry(name, mode, uid, gid, body, (rdev[0], rdev[1]))


def extract_archive(data: bytes, dest: Path) -> None:
    """Unpack a newc archive into the existing directory ``dest`` with its owners and modes
    (setuid bits, device nodes: needs root). ``dest`` itself takes the ``.`` entry's mode; a
    member whose directory has no entry of its own (``dev/console``) gets one made."""
    for entry in read_archive(data):
        path = dest / entry.name if entry.name != "." else dest
        path.parent.mkdir(parents=True, exist_ok=True)
        kind = stat.S_IFMT(entry.mode)
        if kind == stat.S_IFDIR:
            path.mkdir(exist_ok=True)
        elif kind == stat.S_IFLNK:
            path.symlink_to(entry.data.decode())
        elif kind == stat.S_IFREG:
            path.write_bytes(entry.data)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            os.mknod(path, entry.mode, os.makedev(*entry.rdev))
        else:
            raise ValueError(f"unsupported file type in archive: {entry.name}")
        os.chown(path, entry.uid, entry.gid, follow_symlinks=False)
        if kind != stat.S_IFLNK:
            # After chown, which clears setuid bits.
            os.chmod(path, stat.S_IMODE(entry.mode))
