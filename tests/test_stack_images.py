"""The image store (stack/nova/image/store.py) and a compute's first download (stack/nova/virt/images.py).

A real ImageServer on 127.0.0.1 serves a store; fetch_to_base pulls from it as nova-compute does.
"""

from __future__ import annotations

import hashlib
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

STACK = Path(__file__).resolve().parents[1] / "stack"
sys.path.insert(0, str(STACK))

from flatbed import provisioning  # noqa: E402
from flatbed.images.guest import GuestImage  # noqa: E402
from nova import db as nova_db  # noqa: E402
from nova.image import store as image_store  # noqa: E402
from nova.virt import images  # noqa: E402

KERNEL, RAMDISK = b"\x7fkernel" * 1000, b"initramfs" * 2000


def put_image(store: Path, name: str, image_hash: str, *, checksums: bool = True, **extra: object) -> Path:
    directory = store / image_hash
    directory.mkdir(parents=True)
    (directory / "kernel").write_bytes(KERNEL)
    (directory / "ramdisk").write_bytes(RAMDISK)
    meta: dict[str, object] = {"name": name, "kind": "initramfs", "hash": image_hash, "cmdline": "console=ttyS0",
                               "files": ["kernel", "ramdisk"], **extra}
    if checksums:
        meta["checksums"] = {"kernel": hashlib.sha256(KERNEL).hexdigest(),
                             "ramdisk": hashlib.sha256(RAMDISK).hexdigest()}
    (directory / "image.json").write_text(json.dumps(meta))
    return directory


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[image_store.ImageStore, str]]:
    store = image_store.ImageStore(tmp_path / "images", nova_db.Database(str(tmp_path / "nova.sqlite")))
    put_image(store.path, "cirros", "aaaa1111")
    server = image_store.ImageServer("127.0.0.1", 0, store)
    server.start()
    yield store, f"http://127.0.0.1:{server.port}/v1/images"
    server.stop()


def test_store_lists_finds_and_numbers_images(served: tuple[image_store.ImageStore, str]) -> None:
    store, _ = served
    put_image(store.path, "other", "bbbb2222", id="5357143d-66f5-446c-a82f-86648ebb3842")
    (store.path / "broken").mkdir()
    (store.path / "broken" / "image.json").write_text("{not json")
    assert [(i.name, i.hash) for i in store.list()] == [("cirros", "aaaa1111"), ("other", "bbbb2222")]
    cirros = store.find("cirros")[0]
    assert cirros.id == image_store.image_uuid("aaaa1111")  # derived, stable across testbeds
    assert store.find(cirros.id) == store.find("aaaa1111") == [cirros]
    assert store.find("5357143d-66f5-446c-a82f-86648ebb3842")[0].name == "other"
    assert store.find("nope") == []
    assert store.ec2_id(cirros.id) == "ami-00000001"
    assert store.ec2_id("5357143d-66f5-446c-a82f-86648ebb3842") == "ami-00000002"
    assert store.ec2_id(cirros.id) == "ami-00000001"  # assigned once


def test_server_serves_only_listed_files(served: tuple[image_store.ImageStore, str]) -> None:
    store, url = served
    image = store.find("cirros")[0]
    (image.path / "secret").write_text("not an image file")
    with urllib.request.urlopen(f"{url}/{image.id}") as response:
        assert json.loads(response.read())["name"] == "cirros"
    with urllib.request.urlopen(f"{url}/{image.id}/ramdisk") as response:
        assert response.read() == RAMDISK
    with urllib.request.urlopen(url) as response:
        assert [i["id"] for i in json.loads(response.read())] == [image.id]
    for path in (f"{image.id}/secret", f"{image.id}/image.json", "nope", f"{image.id}/..%2F..%2Fnova.sqlite"):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"{url}/{path}")
        assert error.value.code == 404


def test_fetch_to_base_downloads_once(served: tuple[image_store.ImageStore, str], tmp_path: Path) -> None:
    store, url = served
    image = store.find("cirros")[0]
    dest = tmp_path / "instances" / "_base" / image.hash
    meta = images.fetch_to_base(f"{url}/{image.id}", dest)
    assert meta["name"] == "cirros" and (dest / "kernel").read_bytes() == KERNEL
    assert sorted(p.name for p in dest.iterdir()) == ["image.json", "kernel", "ramdisk"]
    (dest / "kernel").write_bytes(b"cached copy")
    images.fetch_to_base(f"{url}/{image.id}", dest)  # cached: not downloaded again
    assert (dest / "kernel").read_bytes() == b"cached copy"
    assert [p.name for p in dest.parent.iterdir()] == [image.hash]  # no partial directory left


def test_checksum_mismatch_leaves_nothing(served: tuple[image_store.ImageStore, str], tmp_path: Path) -> None:
    store, url = served
    image = store.find("cirros")[0]
    (image.path / "ramdisk").write_bytes(b"corrupted")
    dest = tmp_path / "_base" / image.hash
    with pytest.raises(images.ImageFetchError, match=r"/ramdisk: sha256 \w+ does not match the store's"):
        images.fetch_to_base(f"{url}/{image.id}", dest)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


def test_unknown_image_is_a_clear_error(served: tuple[image_store.ImageStore, str], tmp_path: Path) -> None:
    _, url = served
    with pytest.raises(images.ImageFetchError, match=r"GET .*/v1/images/nope: HTTP 404"):
        images.fetch_to_base(f"{url}/nope", tmp_path / "_base" / "x")
    with pytest.raises(images.ImageFetchError, match="refused"):
        images.fetch_to_base("http://127.0.0.1:9/v1/images/x", tmp_path / "_base" / "y")


def test_host_side_image_meta_has_checksums(tmp_path: Path) -> None:
    (tmp_path / "vmlinuz").write_bytes(KERNEL)
    (tmp_path / "initrd").write_bytes(RAMDISK)
    guest = GuestImage(kind="initramfs", kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd", disk=None,
                       hash="cafe", login_user="cirros", login_password="cubswin:)", cmdline="console=ttyS0")
    meta = provisioning.image_meta(guest)
    assert meta["files"] == ["kernel", "ramdisk"]
    assert meta["checksums"] == {"kernel": hashlib.sha256(KERNEL).hexdigest(),
                                 "ramdisk": hashlib.sha256(RAMDISK).hexdigest()}
