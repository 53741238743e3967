"""stack/nova/api/metadata.py: the Essex tree, its listing format, the URL map and every 404.

The HTTP cases run the real MetadataServer on 127.0.0.1 and read raw status lines, since busybox
wget prints them on the guest's console (``wget: server returned error: HTTP/1.1 404 Not Found``).
"""

from __future__ import annotations

import base64
import doctest
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

STACK = Path(__file__).resolve().parents[1] / "stack"
sys.path.insert(0, str(STACK))

from nova.api import ec2utils, metadata  # noqa: E402

KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7 cirros@flatbed"


def tree(key_name: str | None = None, user_data: str | None = "", instance_id: int = 9) -> dict[str, Any]:
    return metadata.build_tree(
        instance_id=instance_id, hostname="cirros", dhcp_domain="novalocal", instance_type="m1.tiny",
        address="10.0.0.2", availability_zone="nova", image_ec2_id="ami-00000001", reservation_id="r-0a1b2c3d",
        key_name=key_name, key_data=KEY if key_name else None, user_data=user_data)


def get(path: str, data: dict[str, Any]) -> str | None:
    value = metadata.lookup(path, data)
    return None if value is None else metadata.print_data(value)


def test_doctests() -> None:
    for module in (metadata, ec2utils):
        assert doctest.testmod(module).failed == 0


def test_meta_data_listing_without_key() -> None:
    assert get("/meta-data/", tree()) == "\n".join([
        "ami-id", "ami-launch-index", "ami-manifest-path", "block-device-mapping/", "hostname", "instance-action",
        "instance-id", "instance-type", "local-hostname", "local-ipv4", "placement/", "public-hostname",
        "public-ipv4", "reservation-id", "security-groups"])


def test_top_listing_and_last_newline_cut() -> None:
    assert get("", tree()) == "meta-data/\nuser-data"
    assert not get("/meta-data/", tree()).endswith("\n")


@pytest.mark.parametrize(("path", "expected"), [
    ("/meta-data/instance-id", "i-00000009"),
    ("/meta-data/local-ipv4", "10.0.0.2"),
    ("/meta-data/hostname", "cirros.novalocal"),
    ("/meta-data/local-hostname", "cirros.novalocal"),
    ("/meta-data/public-hostname", "cirros.novalocal"),
    ("/meta-data/public-ipv4", ""),
    ("/meta-data/ami-id", "ami-00000001"),
    ("/meta-data/ami-launch-index", "0"),
    ("/meta-data/ami-manifest-path", "FIXME"),
    ("/meta-data/instance-action", "none"),
    ("/meta-data/instance-type", "m1.tiny"),
    ("/meta-data/reservation-id", "r-0a1b2c3d"),
    ("/meta-data/security-groups", "default"),
    ("/meta-data/placement/", "availability-zone"),
    ("/meta-data/placement/availability-zone", "nova"),
    ("/meta-data/block-device-mapping/", "ami\nephemeral0\nroot\nswap"),
    ("/meta-data/block-device-mapping/root", "/dev/sda1"),
    ("/meta-data/mpi/", None),  # removed before Essex 2012.1 (nova 8ecdc44690): 404
    # Essex: a leaf ends the walk, the rest of the path is ignored.
    ("/meta-data/instance-id/anything", "i-00000009"),
    ("/user-data", ""),
])
def test_values(path: str, expected: str | None) -> None:
    assert get(path, tree()) == expected


def test_instance_id_of_id_10_is_hex() -> None:
    assert get("/meta-data/instance-id", tree(instance_id=10)) == "i-0000000a"


@pytest.mark.parametrize("path", ["/meta-data/public-keys", "/meta-data/public-keys/", "/meta-data/public-keys/0",
                                  "/meta-data/kernel-id", "/meta-data/nope", "/nope", "/meta-data/placement/x"])
def test_missing_keys_are_none(path: str) -> None:
    assert metadata.lookup(path, tree()) is None


def test_public_keys_tree_with_a_key() -> None:
    data = tree(key_name="mykey")
    assert "public-keys/" in get("/meta-data/", data).splitlines()
    assert get("/meta-data/public-keys", data) == "0=mykey"
    assert get("/meta-data/public-keys/", data) == "0=mykey"
    assert get("/meta-data/public-keys/0", data) == "openssh-key"
    assert get("/meta-data/public-keys/0/openssh-key", data) == KEY


def test_user_data_is_decoded() -> None:
    script = "#!/bin/sh\necho hi\n"
    assert get("/user-data", tree(user_data=base64.b64encode(script.encode()).decode())) == script
    assert get("/user-data", tree(user_data=None)) == ""


def test_versions_text() -> None:
    assert metadata.versions_text() == ("1.0\n2007-01-19\n2007-03-01\n2007-08-29\n2007-10-10\n2007-12-15\n"
                                        "2008-02-01\n2008-09-01\n2009-04-04\n")


# --- over HTTP ------------------------------------------------------------------------------------

class Source:
    """Instances by source address, as ComputeAPI.metadata_for_address answers."""

    def __init__(self) -> None:
        self.trees: dict[str, dict[str, Any]] = {}
        self.asked: list[str] = []

    def __call__(self, address: str) -> dict[str, Any] | None:
        self.asked.append(address)
        if address == "10.9.9.9":
            raise RuntimeError("database is locked")
        return self.trees.get(address)


@pytest.fixture
def server() -> Iterator[tuple[metadata.MetadataServer, Source]]:
    source = Source()
    srv = metadata.MetadataServer("127.0.0.1", 0, source)
    srv.start()
    yield srv, source
    srv.stop()


def request(port: int, path: str, headers: str = "") -> tuple[str, str]:
    """Raw HTTP as busybox wget sends it; returns (status line, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: Wget\r\n{headers}"
                     "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body.decode()


def test_unknown_source_is_404_with_http11_status(server: tuple[metadata.MetadataServer, Source]) -> None:
    srv, source = server
    status, _ = request(srv.port, "/2009-04-04/meta-data/instance-id")
    assert status == "HTTP/1.1 404 Not Found"
    assert source.asked == ["127.0.0.1"]


def test_known_source_gets_its_tree(server: tuple[metadata.MetadataServer, Source]) -> None:
    srv, source = server
    source.trees["127.0.0.1"] = tree()
    for version in ("2009-04-04", "latest", "1.0"):
        assert request(srv.port, f"/{version}/meta-data/instance-id") == ("HTTP/1.1 200 OK", "i-00000009")
    assert request(srv.port, "/latest/meta-data/public-ipv4") == ("HTTP/1.1 200 OK", "")
    assert request(srv.port, "/2009-04-04/user-data") == ("HTTP/1.1 200 OK", "")
    assert request(srv.port, "/latest") == ("HTTP/1.1 200 OK", "meta-data/\nuser-data")
    # cirros' ec2metadata without a key: the 404 its console shows.
    assert request(srv.port, "/latest/meta-data/public-keys")[0] == "HTTP/1.1 404 Not Found"
    assert request(srv.port, "/latest/meta-data/nope")[0] == "HTTP/1.1 404 Not Found"


def test_versions_at_root_and_unknown_prefixes(server: tuple[metadata.MetadataServer, Source]) -> None:
    srv, source = server
    for path in ("/", "/2010-01-01/meta-data/instance-id", "/latestx"):
        assert request(srv.port, path) == ("HTTP/1.1 200 OK", metadata.versions_text())
    assert source.asked == []  # the versions list needs no instance


def test_lookup_error_is_500(server: tuple[metadata.MetadataServer, Source]) -> None:
    srv, source = server
    srv.use_forwarded_for = True
    status, body = request(srv.port, "/latest/meta-data/", "X-Forwarded-For: 10.9.9.9\r\n")
    assert status == "HTTP/1.1 500 Internal Server Error"
    assert "unknown error" in body


def test_forwarded_for_only_when_enabled(server: tuple[metadata.MetadataServer, Source]) -> None:
    srv, source = server
    source.trees["10.0.0.2"] = tree()
    forwarded = "X-Forwarded-For: 10.0.0.2\r\n"
    assert request(srv.port, "/latest/meta-data/local-ipv4", forwarded)[0] == "HTTP/1.1 404 Not Found"
    srv.use_forwarded_for = True
    assert request(srv.port, "/latest/meta-data/local-ipv4", forwarded) == ("HTTP/1.1 200 OK", "10.0.0.2")
