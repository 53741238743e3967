"""Unit tests for the image input hash and the host-apt parsing (no network, no building)."""

from __future__ import annotations

from pathlib import Path

from flatbed.images import apt, base, guest
from flatbed.images.hashing import hash_tree, input_hash

PKGS = {"systemd": "252.39-1~deb12u2", "dbus": "1.14.10-1~deb12u1", "qemu-utils": "1:7.2+dfsg-7"}
MIRROR = "http://deb.debian.org/debian"


def test_hash_ignores_package_order() -> None:
    reordered = dict(reversed(list(PKGS.items())))
    assert input_hash("r1", PKGS, "bookworm", MIRROR) == input_hash("r1", reordered, "bookworm", MIRROR)


def test_hash_changes_with_a_package_version() -> None:
    bumped = {**PKGS, "dbus": "1.14.10-1~deb12u2"}
    assert input_hash("r1", PKGS, "bookworm", MIRROR) != input_hash("r1", bumped, "bookworm", MIRROR)


def test_hash_changes_with_the_package_set() -> None:
    more = {**PKGS, "less": "590-2.1~deb12u2"}
    assert input_hash("r1", PKGS, "bookworm", MIRROR) != input_hash("r1", more, "bookworm", MIRROR)


def test_hash_changes_with_mirror_suite_and_recipe() -> None:
    ref = input_hash("r1", PKGS, "bookworm", MIRROR)
    assert ref != input_hash("r1", PKGS, "bookworm", "http://apt-cache.local:3142/debian")
    assert ref != input_hash("r1", PKGS, "trixie", MIRROR)
    assert ref != input_hash("r2", PKGS, "bookworm", MIRROR)
    # A trailing slash names the same mirror.
    assert ref == input_hash("r1", PKGS, "bookworm", MIRROR + "/")


def test_hash_changes_with_a_guest_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    script = tmp_path / "etc" / "rcS"
    script.write_text("#!/bin/sh\necho one\n")
    before = input_hash("r1", PKGS, "bookworm", MIRROR, hash_tree(tmp_path))
    script.write_text("#!/bin/sh\necho two\n")
    after = input_hash("r1", PKGS, "bookworm", MIRROR, hash_tree(tmp_path))
    assert before != after
    script.chmod(0o755)  # an rc script that loses or gains its exec bit behaves differently
    assert after != input_hash("r1", PKGS, "bookworm", MIRROR, hash_tree(tmp_path))


def test_hash_tree_covers_symlinks(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x")
    (tmp_path / "S40-network").symlink_to("a")
    tree = hash_tree(tmp_path)
    assert set(tree) == {"a", "S40-network"}
    (tmp_path / "S40-network").unlink()
    (tmp_path / "S40-network").symlink_to("b")
    assert hash_tree(tmp_path) != tree


def test_builders_hash_functions_are_sensitive() -> None:
    assert base.base_hash(PKGS, MIRROR) != base.base_hash(PKGS, MIRROR + "-other")
    files = {"init": "x" + "0" * 64}
    assert guest.guest_hash(PKGS, MIRROR, files) != guest.guest_hash(PKGS, MIRROR, {"init": "x" + "1" * 64})


def test_the_guest_tree_is_hashed() -> None:
    tree = hash_tree(guest.GUEST_SRC)
    assert "init" in tree and "etc/rc3.d/S40-network" in tree


DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def test_deb822_mirror() -> None:
    sources = apt.parse_deb822_sources(DEB822)
    assert [s.uri for s in sources] == ["http://deb.debian.org/debian", "http://deb.debian.org/debian-security"]
    assert apt.pick_debian_mirror(sources) == "http://deb.debian.org/debian"


def test_deb822_security_first_and_disabled_and_src() -> None:
    text = """\
Types: deb
URIs: http://security.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://cache.lan:3142/debian
Suites: bookworm
Components: main contrib
"""
    assert apt.pick_debian_mirror(apt.parse_deb822_sources(text)) == "http://cache.lan:3142/debian"


def test_one_line_mirror() -> None:
    text = """\
# comment
deb-src http://deb.debian.org/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://ftp.de.debian.org/debian/ bookworm main contrib
deb http://deb.debian.org/debian bookworm-updates main
"""
    sources = apt.parse_one_line_sources(text)
    assert sources[1].uri == "http://ftp.de.debian.org/debian/"
    assert sources[1].components == ("main", "contrib")
    assert apt.pick_debian_mirror(sources) == "http://ftp.de.debian.org/debian/"


def test_no_mirror() -> None:
    assert apt.pick_debian_mirror(apt.parse_one_line_sources("deb http://x/ bookworm contrib\n")) is None


POLICY = """\
systemd:
  Installed: 252.39-1~deb12u2
  Candidate: 252.39-1~deb12u2
  Version table:
 *** 252.39-1~deb12u2 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
     252.38-1~deb12u1 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-image-cloud-amd64:
  Installed: (none)
  Candidate: 6.1.192-2
  Version table:
     6.1.192-2 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
     6.1.176-1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
"""


def test_policy_suite_version_is_not_the_security_candidate() -> None:
    table = apt.parse_policy(POLICY)
    kernel = table["linux-image-cloud-amd64"]
    assert kernel.candidate == "6.1.192-2"
    assert apt.version_in_suite(kernel, "bookworm/main", MIRROR) == "6.1.176-1"
    assert apt.version_in_suite(table["systemd"], "bookworm/main", MIRROR) == "252.39-1~deb12u2"
    # An override mirror unknown to the host's lists falls back to any origin of the suite.
    assert apt.version_in_suite(kernel, "bookworm/main", "http://cache.lan/debian") == "6.1.176-1"
    assert apt.version_in_suite(kernel, "trixie/main", MIRROR) is None


def test_parse_depends_first_alternative() -> None:
    text = """\
dropbear-bin
  Depends: libc6
 |Depends: libcrypt1
  Depends: libxcrypt
  PreDepends: zlib1g
  Depends: <virtual-thing>
libtomcrypt1
  Depends: libgmp10
"""
    assert apt.parse_depends(text) == {
        "dropbear-bin": ["libc6", "libcrypt1", "zlib1g"],
        "libtomcrypt1": ["libgmp10"],
    }


def test_closure_follows_first_alternatives_only() -> None:
    deps = {"a": ["b", "c"], "b": ["d"], "c": ["b"], "x": ["y"]}
    assert apt.closure_of(["a"], deps) == ["a", "b", "c", "d"]
