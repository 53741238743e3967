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

from fixtures.cli import session_cli
from fixtures.guests import BootedGuests
from flatbed.checks.cirros import Expected, Facts, Mismatch, check_console
from flatbed.checks.console import console
from flatbed.checks.expect import Identity
from flatbed.checks.guestshell import GuestShell, guest_shell
from flatbed.checks.runs import BackgroundRun, junit_outcomes
from flatbed.checks.timeouts import CLOUD_FINAL_TIMEOUT
from flatbed.cloud import Guest
from flatbed.errors import FlatbedError
from flatbed.images.hashing import hash_file
from flatbed.provisioning import IMAGE_STORE
from flatbed.reuse import history
from flatbed.testbed import Testbed
from flatbed.waiters import wait_until

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


def start_in_background(config: pytest.Config) -> None:
    """Build the disk (cached) and start the inner run once collection is done (e2e/conftest.py),
    beside the other modules; stopped at the session's end if still going."""
    if why_not(config) or RUN in config.stash:
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
    start_in_background(pytestconfig)  # when this module was not collected with the others
    rc, output = pytestconfig.stash[RUN].result()
    junit = pytestconfig.stash[JUNIT]
    outcomes = junit_outcomes(junit) if junit.exists() else {}
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
def disk_guest(image: Path, bed: Testbed) -> Iterator[tuple[Guest, Expected]]:
    """A guest of the given image on the first compute, with the facts its console must show:
    the first address and instance id of the topology when the testbed never had a guest (always
    so in the inner run), else nova's record of it."""
    fresh = history(bed) is None
    topo = bed.topology
    booted = BootedGuests(bed)
    guest = booted.boot("cirros-disk", compute=topo.computes[0].name)
    try:
        lease_time = int(topo.nova_flags(topo.controller).get("dhcp_lease_time", 120))
        if fresh:
            expected = Expected(str(topo.flat.dhcp_start), lease_time, f"i-{topo.first_instance_id:08x}")
        else:
            expected = Expected(guest.ip, lease_time, Identity(guest.id).ec2_id)
        yield guest, expected
    finally:
        booted.delete_all()


def test_store_holds_the_given_file(image: Path, bed: Testbed) -> None:
    digest = hash_file(image)
    meta = json.loads(bed.controller.check(["cat", f"{IMAGE_STORE}/{digest}/image.json"]))
    assert (meta["kind"], meta["files"], meta["checksums"]["disk"]) == ("disk", ["disk"], digest)


def test_domain_boots_from_its_disk(disk_guest: tuple[Guest, Expected], image: Path) -> None:
    guest, _ = disk_guest
    domain = ET.fromstring(guest.node.check(["virsh", "dumpxml", guest.instance_name]))
    assert domain.find("os/kernel") is None and domain.find("os/boot").get("dev") == "hd"
    source = domain.find("devices/disk/source").get("file")
    assert source == f"{guest.instance_dir}/disk"
    info = json.loads(guest.node.check(["qemu-img", "info", "-U", "--output=json", source]))
    backing = info.get("full-backing-filename") or info.get("backing-filename", "")
    assert info["format"] == "qcow2" and backing.endswith(f"/_base/{hash_file(image)}/disk"), info


def test_console_shows_the_facts_in_its_generations_words(disk_guest: tuple[Guest, Expected]) -> None:
    guest, expected = disk_guest

    def facts() -> Facts | None:
        result = check_console(console(guest), expected)
        if isinstance(result, Mismatch) and result.final:
            raise AssertionError(f"{guest.name}: {result}")
        return result if isinstance(result, Facts) else None

    try:
        found = wait_until(facts, timeout=CLOUD_FINAL_TIMEOUT, interval=1,
                           what=f"{guest.name}: the lease, metadata and instance-id lines of its cirros generation",
                           describe=lambda: str(check_console(console(guest), expected)))
    except FlatbedError as e:
        raise AssertionError(f"{e}\nconsole tail:\n" + "\n".join(console(guest).splitlines()[-25:])) from None
    print(found)


@pytest.fixture(scope="module")
def shell(disk_guest: tuple[Guest, Expected], bed: Testbed) -> Iterator[GuestShell]:
    with guest_shell(bed, disk_guest[0]) as session:
        yield session


def test_root_is_the_disk_and_sudo_gives_root(shell: GuestShell) -> None:
    mounts = [line.split() for line in shell.check(["cat", "/proc/mounts"]).splitlines()]
    root = [m for m in mounts if m[1] == "/"][-1]
    assert root[0].startswith("/dev/vd") and root[2].startswith("ext"), f"/ is not the disk: {root}"
    assert shell.check(["id", "-u"]).strip() != "0"
    assert shell.check(["sudo", "-n", "id", "-u"]).strip() == "0"
