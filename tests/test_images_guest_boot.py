"""Boot the cirros-compatible guest under TCG and check its console against CirrOS 0.3.0's lines.

Integration test: needs root, qemu-system-x86_64, dnsmasq, ``ip`` and the host's apt (to build or
reuse the cached guest). Everything runs in a network namespace of its own (tests/guestboot.py).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import pytest
from guestboot import SKIP, boot

pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Boot the guest once; yield (console text, metadata request log)."""
    from flatbed.images.guest import ensure_guest

    image = ensure_guest(progress=lambda line: print(line, file=sys.stderr))
    assert image.kernel and image.initrd
    with boot(tmp_path_factory.mktemp("guestboot"),
              ["-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", image.cmdline], "img") as out:
        yield out


def _expect(text: str, pattern: str) -> re.Match[str]:
    match = re.search(pattern, text, re.M | re.I)
    assert match, f"console lacks /{pattern}/:\n{text[-3000:]}"
    return match


def test_dhcp_lines(booted: tuple[str, str]) -> None:
    text, _ = booted
    _expect(text, r"^Starting network\.\.\.")
    _expect(text, r"^udhcpc(: started, v1\.35\.0| \(v[\d.]+\) started)")
    _expect(text, r"^(udhcpc: )?(sending|broadcasting) discover")
    _expect(text, r"^(udhcpc: )?(sending|broadcasting) select for 10\.0\.0\.2")
    _expect(text, r"^(udhcpc: )?lease of 10\.0\.0\.2 obtained(, | from 10\.0\.0\.1, )lease time 120")
    _expect(text, r"^deleting routers$")
    _expect(text, r"^adding dns 10\.0\.0\.1$")


def test_metadata_lines(booted: tuple[str, str]) -> None:
    text, requests = booted
    _expect(text, r"^cloud-setup: checking http://169\.254\.169\.254/2009-04-04/meta-data/instance-id$")
    _expect(text, r"^cloud-setup: successful after \d+/30 tries: up \d+\.\d\d\. iid=i-00000009$")
    _expect(text, r"^wget: server returned error: HTTP/1\.1 404 Not Found$")
    _expect(text, r"^failed to get http://169\.254\.169\.254/latest/meta-data/public-keys$")
    _expect(text, r"^===== cloud-final: system completely up in \d+\.\d\d seconds ====$")
    assert "\n  instance-id: i-00000009\n  public-ipv4: \n  local-ipv4 : 10.0.0.2\n" in text
    _expect(text, r"^cloud-userdata: user data not a script$")
    order = [line.split()[1] for line in requests.splitlines() if line.startswith("GET ")]
    md = "/2009-04-04/meta-data/"
    assert order[-7:] == [
        md + "instance-id", "/latest/meta-data/public-keys", md + "instance-id", md + "public-ipv4",
        md + "local-ipv4", md + "instance-id", "/2009-04-04/user-data",
    ]


def test_dropbear_and_login(booted: tuple[str, str]) -> None:
    text, _ = booted
    _expect(text, r"^Starting dropbear sshd: (generating \w+ key\.\.\. .*)+OK$")
    _expect(text, r"login as 'cirros' user\. default password: 'cubswin:\)'\. use 'sudo' for root\.")
    _expect(text, r"cirros login:")
