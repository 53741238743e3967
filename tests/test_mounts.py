"""The one reader of ``/proc/self/mountinfo``."""

from __future__ import annotations

from pathlib import Path

from flatbed import mounts

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
98 22 0:45 / /var/lib/flatbed/testbeds/fb0000aa/nodes/a\\040b rw - overlay overlay rw
99 98 0:46 / /var/lib/flatbed/testbeds/fb0000aa/nodes/a\\040b/proc rw - proc proc rw
100 22 0:47 / /var/lib/flatbed/testbeds-other/fb0000bb rw - tmpfs tmpfs rw
"""


def test_mount_points_are_unescaped():
    assert mounts.parse_mount_points(MOUNTINFO)[1] == Path("/var/lib/flatbed/testbeds/fb0000aa/nodes/a b")
    assert mounts.unescape("a\\011b\\012c\\134d") == "a\tb\nc\\d"


def test_mounts_under_a_path_deepest_first_and_not_its_siblings(monkeypatch):
    monkeypatch.setattr(mounts, "mount_points", lambda: mounts.parse_mount_points(MOUNTINFO))
    assert mounts.mounts_under(Path("/var/lib/flatbed/testbeds")) == [
        Path("/var/lib/flatbed/testbeds/fb0000aa/nodes/a b/proc"), Path("/var/lib/flatbed/testbeds/fb0000aa/nodes/a b")]
