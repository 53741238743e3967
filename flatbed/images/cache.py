"""The on-disk image cache: ``<cache>/<kind>-<hash16>/`` directories with a ``.complete`` marker.

A build happens in a temporary directory inside the cache and is renamed into place only after
the marker was written, so an interrupted build never leaves a directory that looks complete.
Builds of one kind are serialised with a lock file, which also makes it safe to delete that kind's
leftover temporary directories at the start of the next build.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flatbed.errors import FlatbedError
from flatbed.images.hashing import SHORT
from flatbed.images.progress import Progress
from flatbed.mounts import mounts_under

MARKER = ".complete"
# Free space a build needs under the cache (its temporary tree plus the result, with room to
# spare; measured: base 414 MiB, box 558 MiB + its store copy, guest and cirros disk < 30 MiB).
BUILD_SPACE = {"base": 2 * 2**30, "box": 3 * 2**30, "guest": 2**30, "cirros": 2**30}
DEFAULT_CACHE = Path("/var/cache/flatbed")


def cache_dir() -> Path:
    """The cache root: ``$FLATBED_CACHE`` or ``/var/cache/flatbed``."""
    env = os.environ.get("FLATBED_CACHE")
    return Path(env) if env else DEFAULT_CACHE


def image_dir(kind: str, digest: str) -> Path:
    """Where the image ``kind`` with input hash ``digest`` lives (complete or not)."""
    return cache_dir() / f"{kind}-{digest[:SHORT]}"


def is_complete(path: Path) -> bool:
    """True when ``path`` holds a finished image."""
    return (path / MARKER).is_file()


@contextmanager
def kind_lock(kind: str, progress: Progress | None = None) -> Iterator[None]:
    """Hold an exclusive lock for building images of ``kind``; while another build (another pytest
    worker, another run) holds it, wait, and say so to ``progress``."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{kind}.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                progress(f"{kind}: waiting for another process's build to finish ({root / f'.{kind}.lock'})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_tree(path: Path) -> None:
    """Delete ``path`` after unmounting anything mounted below it.

    debootstrap and chroot tests mount /proc, /sys or /dev inside a root; deleting through such
    a mount would wipe the host's files, so this refuses when a mount cannot be removed.
    """
    if not path.exists() and not path.is_symlink():
        return
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)
    left = mounts_under(path)
    if left:
        raise RuntimeError(f"refusing to delete {path}: still mounted: {', '.join(map(str, left))}")
    shutil.rmtree(path)


class CacheProblem(FlatbedError):
    """A cache entry that is marked complete but is not, or no room to build one."""


def check_entry(path: Path, digest: str, outputs: tuple[str, ...]) -> None:
    """A complete entry's marker names its input hash and its outputs are there; else one line.

    It is not rebuilt behind the user's back: a running testbed may still use it (containers
    boot from the base root in place).
    """
    marker = (path / MARKER).read_text().split("\n", 1)[0].strip()
    missing = [name for name in outputs if not (path / name).exists()]
    why = (f"its marker names input hash {marker[:16] or 'nothing'}" if marker != digest else
           f"{', '.join(missing)} missing" if missing else None)
    if why:
        raise CacheProblem(f"image cache entry {path} is corrupt ({why}); remove it (`rm -rf {path}`, once no "
                           f"testbed uses it) and run again to rebuild it")


def check_space(kind: str) -> None:
    """Room for a build of ``kind`` under the cache (checked before building; nothing is made)."""
    root = cache_dir()
    where = root if root.exists() else next(p for p in root.parents if p.exists())
    free = shutil.disk_usage(where).free
    need = BUILD_SPACE.get(kind, BUILD_SPACE["base"])
    if free < need:
        raise CacheProblem(f"only {free / 2**20:.0f} MiB free under {root}; building the {kind} image needs "
                           f"{need / 2**30:.1f} GiB (free some space, or point FLATBED_CACHE elsewhere)")


def build_cached(
    kind: str,
    digest: str,
    builder: Callable[[Path], None],
    progress: Progress,
    outputs: tuple[str, ...] = (),
) -> tuple[Path, bool]:
    """Return ``(image dir, was_cached)``, running ``builder(tmpdir)`` only when needed.

    ``builder`` fills the temporary directory; on success the marker is written and the
    directory renamed to its final name. A cached entry must hold ``outputs``; a build needs
    room under the cache (``BUILD_SPACE``).
    """
    final = image_dir(kind, digest)
    if is_complete(final):
        check_entry(final, digest, outputs)
        return final, True
    check_space(kind)
    with kind_lock(kind, progress):
        if is_complete(final):  # another process finished it while we waited for the lock
            return final, True
        root = cache_dir()
        for stale in root.glob(f".{kind}-build-*"):
            progress(f"removing leftover temporary build {stale}")
            remove_tree(stale)
        if final.exists():
            progress(f"removing incomplete image {final}")
            remove_tree(final)
        tmp = root / f".{kind}-build-{digest[:SHORT]}-{os.getpid()}"
        tmp.mkdir()
        try:
            builder(tmp)
            (tmp / MARKER).write_text(f"{digest}\n{time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
            os.rename(tmp, final)
        except BaseException:
            # Keep no half image around; if even this is interrupted the next build cleans up.
            remove_tree(tmp)
            raise
    return final, False


@dataclass(frozen=True)
class CachedImage:
    """One entry of the cache listing."""

    kind: str
    hash16: str
    path: Path
    size: int
    complete: bool


def tree_size(path: Path) -> int:
    """Bytes allocated below ``path`` (like ``du -s``), not following symlinks or mounts."""
    total = 0
    dev = path.lstat().st_dev
    for dirpath, dirnames, filenames in os.walk(path):
        # Do not descend into mount points (a chroot test may have /proc mounted).
        dirnames[:] = [d for d in dirnames if os.lstat(os.path.join(dirpath, d)).st_dev == dev]
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


def list_images() -> list[CachedImage]:
    """All image directories in the cache (temporary build dirs excluded), sorted by name."""
    root = cache_dir()
    if not root.is_dir():
        return []
    out: list[CachedImage] = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or not path.is_dir() or "-" not in path.name:
            continue
        kind, _, hash16 = path.name.rpartition("-")
        out.append(CachedImage(kind, hash16, path, tree_size(path), is_complete(path)))
    return out


def prune_images(kind: str, keep: Path) -> list[Path]:
    """Delete the other complete or incomplete images of ``kind`` than ``keep``; return them.

    Every edit of ``guest/`` or a package update leaves the previous image behind; callers
    (a future ``flatbed images --prune``) decide when to drop them. Holds the kind's lock so a
    running build of that kind is never touched.
    """
    removed: list[Path] = []
    with kind_lock(kind):
        for image in list_images():
            if image.kind == kind and image.path != keep:
                remove_tree(image.path)
                removed.append(image.path)
    return removed


def overlay(src: Path, root: Path, skip: tuple[str, ...] = ("__pycache__",)) -> None:
    """Copy the tree ``src`` over ``root``: files and links replace those of the same name
    (the box's and the guest's own files over their staged roots)."""
    for path in sorted(src.rglob("*")):
        if any(part in skip for part in path.parts):
            continue
        dest = root / path.relative_to(src)
        if path.is_dir() and not path.is_symlink():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        if path.is_symlink():
            dest.symlink_to(path.readlink())
        else:
            shutil.copy2(path, dest)
