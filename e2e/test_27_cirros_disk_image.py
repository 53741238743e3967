"""``--cirros-image``: a cirros disk image, booted through its own bootloader, end to end.

Two ways in:
- the session was given ``--cirros-image PATH`` (a user's real cirros, of any generation): the
  tests below run on the session's testbed;
- otherwise ``test_cirros_image_option_end_to_end`` builds flatbed's cirros-layout disk
  (``flatbed/images/cirros_disk.py``: MBR, ext3 ``cirros-rootfs``, GRUB in the MBR; cached) and
  runs this module as a user would, ``pytest e2e/test_27_cirros_disk_image.py --cirros-image
  <disk>`` with the session's topology, provider and ``--destroy`` (its own testbed), and requires
  each test below to have passed in it (its JUnit XML, not its summary line).

Steps, on a testbed brought up with ``--cirros-image``:
- the controller's image store holds that very file (its sha256, computed here from the file) as
  a ``disk`` image;
- a guest boots from its disk: the domain has ``<boot dev='hd'/>`` and no ``<kernel>``, its disk
  a qcow2 overlay on the compute's cached copy of the image;
- its console shows, in the words of its cirros generation (``flatbed.checks.cirros``), the lease
  of its address with the topology's lease time, the metadata service at the first try and the
  instance id, the id it reports, and a host key generated on first boot;
- as cirros over SSH: ``/`` is the disk's partition (not a RAM disk) and ``sudo -n id -u`` is 0.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from flatbed.checks.console import wait_for_facts
from flatbed.checks.guestshell import GuestShell, guest_shell
from flatbed.checks.runs import BackgroundRun, junit_outcomes
from flatbed.cloud import Guest
from flatbed.images.hashing import hash_file
from flatbed.provisioning import IMAGE_STORE
from flatbed.testbed import Testbed
from flatbed_fixtures.cli import session_cli
from flatbed_fixtures.guests import BootedGuests
from flatbed_fixtures.plugin import FACTORY
from flatbed_fixtures.variants import side_by_side

pytestmark = pytest.mark.own_testbeds

MODULE = "e2e/test_27_cirros_disk_image.py"
OUTER = "test_cirros_image_option_end_to_end"
# What the inner run must pass: every test of the second half of this module.
INNER_TESTS = ("test_store_holds_the_given_file", "test_domain_boots_from_its_disk",
               "test_console_shows_the_facts_in_its_generations_words", "test_root_is_the_disk_and_sudo_gives_root")


def given_image(config: pytest.Config) -> Path | None:
    path = config.getoption("cirros_image")
    return Path(path).resolve() if path else None


# --- the outer test: this module again, with flatbed's disk as --cirros-image ---------------------

RUN = pytest.StashKey[BackgroundRun]()
JUNIT = pytest.StashKey[Path]()  # the inner run's JUnit XML


def why_not(config: pytest.Config) -> str | None:
    if given_image(config):
        return "the session itself boots --cirros-image: the tests below run on its testbed"
    if config.getoption("reuse"):
        return "brings up a testbed of its own; not run with --reuse"
    return None


def start_in_background(config: pytest.Config, now: bool = False) -> None:
    """Build the disk (cached) and start the inner run once collection is done (e2e/conftest.py),
    beside the other modules where the provider brings testbeds up side by side (else ``now``,
    from the test); stopped at the session's end if still going."""
    if why_not(config) or RUN in config.stash or not (now or side_by_side(config.stash[FACTORY].options)):
        return
    from flatbed.images.cirros_disk import ensure_cirros_disk

    disk = ensure_cirros_disk(progress=print)
    junit = Path(tempfile.mkdtemp(prefix="flatbed-test27-")) / "inner.xml"
    # The session's topology, provider and options (fixtures/cli.py), this disk as the guest.
    run = session_cli(config).pytest_background(MODULE, "--cirros-image", str(disk), f"--junitxml={junit}",
                                                 "-q", "-rs")
    config.stash[RUN] = run
    config.stash[JUNIT] = junit
    config.add_cleanup(run.stop)
    config.add_cleanup(lambda: shutil.rmtree(junit.parent, ignore_errors=True))


def test_cirros_image_option_end_to_end(pytestconfig: pytest.Config) -> None:
    skip = why_not(pytestconfig)
    if skip:
        pytest.skip(skip)
    start_in_background(pytestconfig, now=True)  # not started beside the session, or not collected with it
    rc, output = pytestconfig.stash[RUN].result()
    junit = pytestconfig.stash[JUNIT]
    outcomes = {case.name: case.outcome for case in junit_outcomes(junit)} if junit.exists() else {}
    inner = {name: outcome for name, outcome in outcomes.items() if name != OUTER}
    wanted = {name: "passed" for name in INNER_TESTS}
    assert rc == 0 and inner == wanted and outcomes.get(OUTER) == "skipped", (
        f"pytest {MODULE} --cirros-image <flatbed's cirros disk> exited {rc}; outcomes {outcomes}:\n{output[-6000:]}")
    print(output[-1500:])


# --- on a testbed brought up with --cirros-image ----------------------------------------------------

@pytest.fixture(scope="module")
def image(pytestconfig: pytest.Config) -> Path:
    path = given_image(pytestconfig)
    if path is None:
        pytest.skip(f"needs --cirros-image; without it {OUTER} runs this module with flatbed's cirros disk")
    return path


@pytest.fixture(scope="module")
def bed(image: Path, request: pytest.FixtureRequest) -> Testbed:
    """The session's testbed, asked for only after ``image`` (a session fixture requested directly
    would come up first, for nothing, in a session without --cirros-image)."""
    return request.getfixturevalue("testbed")


@pytest.fixture(scope="module")
def disk_guest(image: Path, bed: Testbed) -> Iterator[Guest]:
    """A guest of the given image on the first compute."""
    booted = BootedGuests(bed)
    try:
        yield booted.boot("cirros-disk", compute=bed.topology.computes[0].name)
    finally:
        booted.delete_all()


def test_store_holds_the_given_file(image: Path, bed: Testbed) -> None:
    digest = hash_file(image)
    meta = json.loads(bed.controller.check(["cat", f"{IMAGE_STORE}/{digest}/image.json"]))
    assert (meta["kind"], meta["files"], meta["checksums"]["disk"]) == ("disk", ["disk"], digest)


def test_domain_boots_from_its_disk(disk_guest: Guest, image: Path) -> None:
    guest = disk_guest
    domain = ET.fromstring(guest.node.check(["virsh", "dumpxml", guest.instance_name]))
    assert domain.find("os/kernel") is None and domain.find("os/boot").get("dev") == "hd"
    source = domain.find("devices/disk/source").get("file")
    assert source == f"{guest.instance_dir}/disk"
    info = json.loads(guest.node.check(["qemu-img", "info", "-U", "--output=json", source]))
    backing = info.get("full-backing-filename") or info.get("backing-filename", "")
    assert info["format"] == "qcow2" and backing.endswith(f"/_base/{hash_file(image)}/disk"), info


def test_console_shows_the_facts_in_its_generations_words(disk_guest: Guest) -> None:
    """The lease of the lowest free address with the topology's lease time, the metadata at the
    first try with the EC2 id of the guest's boot order, that id reported, a host key generated."""
    print(wait_for_facts(disk_guest))


@pytest.fixture(scope="module")
def shell(disk_guest: Guest, bed: Testbed) -> Iterator[GuestShell]:
    with guest_shell(bed, disk_guest) as session:
        yield session


def test_root_is_the_disk_and_sudo_gives_root(shell: GuestShell) -> None:
    mounts = [line.split() for line in shell.check(["cat", "/proc/mounts"]).splitlines()]
    root = [m for m in mounts if m[1] == "/"][-1]
    assert root[0].startswith("/dev/vd") and root[2].startswith("ext"), f"/ is not the disk: {root}"
    assert shell.check(["id", "-u"]).strip() != "0"
    assert shell.check(["sudo", "-n", "id", "-u"]).strip() == "0"
