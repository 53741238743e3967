"""Unit tests for the image cache (atomic builds, reuse, leftovers) and the cpio writer and reader."""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from flatbed.images import cache
from flatbed.images.cpio import DeviceNode, archive_tree, extract_archive, read_archive

DIGEST = "ab" * 32


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLATBED_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_env(_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache.cache_dir() == _cache
    monkeypatch.delenv("FLATBED_CACHE")
    assert cache.cache_dir() == Path("/var/cache/flatbed")


def test_build_then_reuse() -> None:
    lines: list[str] = []
    calls: list[Path] = []

    def builder(tmp: Path) -> None:
        calls.append(tmp)
        (tmp / "payload").write_text("x")

    path, cached = cache.build_cached("demo", DIGEST, builder, lines.append)
    assert (path.name, cached) == (f"demo-{DIGEST[:16]}", False)
    assert cache.is_complete(path) and (path / "payload").read_text() == "x"
    again, cached = cache.build_cached("demo", DIGEST, builder, lines.append)
    assert (again, cached, len(calls)) == (path, True, 1)


def test_failed_build_leaves_nothing(_cache: Path) -> None:
    def builder(tmp: Path) -> None:
        (tmp / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.build_cached("demo", DIGEST, builder, lambda _: None)
    assert [p.name for p in _cache.iterdir() if not p.name.endswith(".lock")] == []


def test_leftovers_of_the_same_kind_are_removed(_cache: Path) -> None:
    _cache.mkdir(parents=True)
    (_cache / ".demo-build-0000-1").mkdir()
    (_cache / ".other-build-0000-1").mkdir()
    incomplete = _cache / f"demo-{DIGEST[:16]}"
    incomplete.mkdir()  # no marker: must not count as built
    path, cached = cache.build_cached("demo", DIGEST, lambda tmp: None, lambda _: None)
    assert not cached and cache.is_complete(path)
    assert not (_cache / ".demo-build-0000-1").exists()
    assert (_cache / ".other-build-0000-1").exists()
    listed = cache.list_images()
    assert [(i.kind, i.hash16, i.complete) for i in listed] == [("demo", DIGEST[:16], True)]


def test_prune_keeps_the_current_image() -> None:
    old, _ = cache.build_cached("demo", "11" * 32, lambda tmp: None, lambda _: None)
    new, _ = cache.build_cached("demo", "22" * 32, lambda tmp: None, lambda _: None)
    other, _ = cache.build_cached("other", "33" * 32, lambda tmp: None, lambda _: None)
    assert cache.prune_images("demo", keep=new) == [old]
    assert new.exists() and other.exists() and not old.exists()


def test_disk_guest_needs_no_build(tmp_path: Path) -> None:
    from flatbed.images.guest import ensure_guest

    disk = tmp_path / "cirros-0.3.0-x86_64-disk.img"
    disk.write_bytes(b"QFI\xfb" + b"\0" * 100)
    image = ensure_guest(progress=lambda _: None, cirros_image=disk)
    assert (image.kind, image.disk, image.kernel, image.initrd) == ("disk", disk, None, None)
    assert (image.login_user, image.login_password) == ("cirros", "cubswin:)")
    assert ensure_guest(lambda _: None, disk, cirros_password="gocubsgo").login_password == "gocubsgo"
    disk.write_bytes(b"QFI\xfb" + b"\1" * 100)
    assert ensure_guest(lambda _: None, disk).hash != image.hash


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs cpio to read the archive back")
def test_cpio_roundtrip(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "home/cirros").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "bin/busybox").write_bytes(b"\x7fELF" + b"0" * 13)
    (root / "bin/busybox").chmod(0o755)
    (root / "bin/sh").symlink_to("busybox")
    data = archive_tree(root, owners={"home/cirros": (1000, 1000)},
                        devices=[DeviceNode("dev/console", stat.S_IFCHR | 0o600, 5, 1)])
    listing = subprocess.run(["cpio", "-itv", "--quiet", "--numeric-uid-gid"], input=gzip.decompress(
        gzip.compress(data)), capture_output=True, check=True).stdout.decode()
    rows = {line.split()[-1] if "->" not in line else line.split()[-3]: line for line in listing.splitlines()}
    assert rows["."].startswith("drwxr-xr-x")
    assert " 1000 " in rows["home/cirros"]
    assert rows["bin/busybox"].startswith("-rwxr-xr-x")
    assert rows["bin/sh"].startswith("lrwx")
    assert rows["dev/console"].startswith("crw-------")
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "bin/busybox"], input=data, cwd=out, check=True)
    assert (out / "bin/busybox").read_bytes() == (root / "bin/busybox").read_bytes()


def test_reader_gives_back_what_the_writer_wrote(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "home/cirros").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/sudo").write_bytes(b"\x7fELF" + b"1" * 9)  # odd length: the data is padded
    (root / "usr/bin/sudo").chmod(0o4755)
    (root / "usr/bin/ssh").symlink_to("dbclient")
    data = archive_tree(root, owners={"home/cirros": (1000, 1000)},
                        devices=[DeviceNode("dev/console", stat.S_IFCHR | 0o600, 5, 1)])
    entries = {e.name: e for e in read_archive(data)}
    assert sorted(entries) == [".", "dev/console", "home", "home/cirros", "usr", "usr/bin", "usr/bin/ssh",
                               "usr/bin/sudo"]
    assert stat.S_IMODE(entries["usr/bin/sudo"].mode) == 0o4755 and entries["usr/bin/sudo"].uid == 0
    assert entries["usr/bin/sudo"].data == b"\x7fELF" + b"1" * 9
    assert (entries["home/cirros"].uid, entries["home/cirros"].gid) == (1000, 1000)
    assert stat.S_ISLNK(entries["usr/bin/ssh"].mode) and entries["usr/bin/ssh"].data == b"dbclient"
    assert entries["dev/console"].rdev == (5, 1)


def test_reader_refuses_what_is_not_newc() -> None:
    with pytest.raises(ValueError, match="not a newc header at offset 0"):
        list(read_archive(b"07070" + b"0" * 200))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to set owners, setuid bits and device nodes")
def test_extract_keeps_owners_setuid_and_devices(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "home/cirros").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "bin/busybox").write_bytes(b"x")
    (root / "bin/busybox").chmod(0o4755)
    data = archive_tree(root, owners={"home/cirros": (1000, 1000)},
                        devices=[DeviceNode("dev/console", stat.S_IFCHR | 0o600, 5, 1)])
    out = tmp_path / "out"
    out.mkdir()
    extract_archive(data, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    st = (out / "bin/busybox").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o4755, 0)
    assert (out / "home/cirros").stat().st_uid == 1000
    console = (out / "dev/console").stat()
    assert stat.S_ISCHR(console.st_mode) and os.major(console.st_rdev) == 5 and os.minor(console.st_rdev) == 1
