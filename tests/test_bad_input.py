"""Bad input, as a table: each case is a clear line (one per problem), the CLI's exit code for it,
and nothing created (no testbed directory in the state root, the image cache untouched).

Cases cover the topology file, the CLI and pytest options, and the host. Two runs building the
same image at once (one builds, the other waits and says so) is tests/test_images_concurrent.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from flatbed import cli, reuse
from flatbed.images import cache
from flatbed.providers.vagrant import VagrantProvider
from flatbed.providers.vagrant.provider import TOOLS
from flatbed.topology import DEFAULT_TOPOLOGY

REPO = Path(__file__).resolve().parents[1]
DOCUMENT = DEFAULT_TOPOLOGY.read_text()
USAGE = 2          # flatbed's exit code for input it refuses (argparse's too)
FAILURE = 1        # flatbed's for a host that cannot do it (a tool missing, the image cache)
PYTEST_USAGE = 4   # pytest's (pytest.UsageError, bad options)

Case = namedtuple("Case", "id edits line")   # edits: (old, new) pairs on the document's topology file


def edited(*edits: tuple[str, str]) -> str:
    text = DOCUMENT
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


TOPOLOGY_CASES = [
    Case("bad cidr", [('cidr = "10.0.0.0/24"', 'cidr = "10.0.0.0/33"')],
         r"networks\.flat\.cidr: '10\.0\.0\.0/33' is not a valid IPv4 CIDR"),
    Case("overlapping subnets", [('cidr = "10.0.0.0/24"', 'cidr = "192.168.0.0/16"')],
         r"networks\.flat\.cidr: 192\.168\.0\.0/16 overlaps networks\.management\.cidr 192\.168\.56\.0/24"),
    Case("duplicate name", [('name = "compute-2"', 'name = "compute-1"')],
         r"nodes\[2\]\.name: 'compute-1' is already used by nodes\[1\]"),
    Case("duplicate address", [('address = "192.168.56.203"', 'address = "192.168.56.202"')],
         r"nodes\[2\]\.address: 192\.168\.56\.202 is already used by compute-1"),
    Case("duplicate mac", [('eth1 = "08:00:27:ee:49:bd"', 'eth1 = "08:00:27:9d:c4:b0"')],
         r"nodes\[1\]\.mac\.eth1: 08:00:27:9d:c4:b0 is already used by controller-1 eth1"),
    Case("bad mac", [('eth2 = "08:00:27:15:85:17"', 'eth2 = "08:00:27:zz:00:01"')],
         r"nodes\[1\]\.mac\.eth2: '08:00:27:zz:00:01' is not a valid MAC address"),
    Case("multicast mac", [('eth2 = "08:00:27:15:85:17"', 'eth2 = "01:00:5e:00:00:01"')],
         r"nodes\[1\]\.mac\.eth2: 01:00:5e:00:00:01 is a multicast MAC"),
    Case("bad bridge name", [('bridge = "br100"', 'bridge = "br-far-too-long-name"')],
         r"networks\.flat\.bridge: 'br-far-too-long-name' is not a valid bridge name \(at most 15 characters\)"),
    Case("unknown key", [('[networks.flat]', '[networks.flat]\nvlan = 100')],
         r"networks\.flat\.vlan: unknown key \(allowed: bridge, cidr, interface, label\)"),
    Case("gateway outside its subnet", [('gateway = "192.168.56.101"', 'gateway = "192.168.57.1"')],
         r"networks\.management\.gateway: 192\.168\.57\.1 is outside networks\.management\.cidr"),
    Case("unknown role", [('role = "compute"', 'role = "network"')],
         r"nodes\[1\]\.role: unknown role 'network' \(roles: controller, compute, outside\)"),
    Case("derived flag set by hand", [("[nova]", '[nova]\nmy_ip = "1.2.3.4"')],
         r"nova\.my_ip: is derived from \[networks\] and the nodes; remove it here"),
    Case("not toml", [("[nova]", "[nova")], r"not valid TOML"),
]


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """A state root and image cache of the test's own (the cache a copy of nothing: empty)."""
    state, images = tmp_path / "state", tmp_path / "cache"
    monkeypatch.setenv("FLATBED_STATE", str(state))
    monkeypatch.setenv("FLATBED_CACHE", str(images))
    return state, images


def flatbed(capsys, *argv: str) -> tuple[int, list[str], str]:
    """``flatbed ARGV`` in this process: exit code, its error lines (progress lines aside), stdout."""
    try:
        rc = cli.main(list(argv))
    except SystemExit as e:   # argparse
        rc = e.code
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return rc, [line for line in out.err.splitlines() if not line.startswith("[flatbed] ")], out.out


def nothing_created(state: Path, images: Path, cache_before: list[str] | None = None) -> None:
    assert not state.exists() or [p.name for p in state.iterdir()] == [], "a testbed directory was created"
    # apt's answers to the version questions an image's hash needs are remembered (.apt-answers):
    # a memo of the host's apt state, not an image, a testbed or anything to clean up.
    made = sorted(p.name for p in images.iterdir() if p.name != ".apt-answers") if images.exists() else []
    assert made == sorted(cache_before or []) if images.exists() else True


@pytest.mark.parametrize("case", TOPOLOGY_CASES, ids=[c.id for c in TOPOLOGY_CASES])
def test_topology_file(case, roots, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(edited(*case.edits))
    rc, err, out = flatbed(capsys, "--topology", str(bad), "up", "--provider", "nspawn")
    assert rc == USAGE and out == ""
    assert len(err) == 1 and re.fullmatch(rf"flatbed: error: {re.escape(str(bad))}: {case.line}.*", err[0]), err
    nothing_created(*roots)


def test_several_problems_in_one_file_are_all_reported(roots, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(edited(('cidr = "10.0.0.0/24"', 'cidr = "10.0.0.0/33"'), ('bridge = "br100"', 'bridge = "b r"'),
                          ('name = "compute-2"', 'name = "compute-1"'), ("[nova]", "[nova]\nhost = 'x'"),
                          ('eth1 = "08:00:27:ee:49:bd"', 'eth1 = "nope"'),
                          ("first_instance_id = 9", "first_instance_id = 9\ncolour = 'red'")))
    rc, err, _ = flatbed(capsys, "--topology", str(bad), "up")
    fields = [line.split(": ")[3] for line in err]
    assert rc == USAGE and all(line.startswith(f"flatbed: error: {bad}: ") for line in err), err
    assert fields == ["colour", "networks.flat.cidr", "networks.flat.bridge", "nova.host", "nodes[1].mac.eth1",
                      "nodes[2].name"], err
    nothing_created(*roots)


def test_missing_topology_file(roots, tmp_path, capsys):
    rc, err, _ = flatbed(capsys, "--topology", str(tmp_path / "nope.toml"), "up")
    assert rc == USAGE and err == [f"flatbed: error: {tmp_path / 'nope.toml'}: cannot read topology file: "
                                   f"No such file or directory"]
    nothing_created(*roots)


def test_variant_whose_base_is_missing(roots, tmp_path, capsys):
    variant = tmp_path / "variant.toml"
    variant.write_text('base = "gone.toml"\n[nova]\nverbose = true\n')
    rc, err, _ = flatbed(capsys, "--topology", str(variant), "up")
    assert rc == USAGE and err == [f"flatbed: error: {tmp_path / 'gone.toml'}: cannot read topology file: "
                                   f"No such file or directory"]
    nothing_created(*roots)


# --- CLI options -------------------------------------------------------------------------------

def test_cirros_image_that_does_not_exist(roots, tmp_path, capsys):
    rc, err, _ = flatbed(capsys, "up", "--provider", "nspawn", "--cirros-image", str(tmp_path / "cirros.img"))
    assert rc == USAGE and err == [f"flatbed: error: --cirros-image {tmp_path / 'cirros.img'}: no such file"]
    nothing_created(*roots)


def test_cirros_image_that_is_not_a_disk_image(roots, tmp_path, capsys):
    notes = tmp_path / "cirros-0.3.0-x86_64-disk.img"
    notes.write_text("not an image, a download page saved by mistake\n" * 20)
    rc, err, _ = flatbed(capsys, "up", "--provider", "nspawn", "--cirros-image", str(notes))
    assert rc == USAGE and err == [f"flatbed: error: --cirros-image {notes}: not a disk image (neither qcow2 nor a "
                                   f"raw disk with a partition table)"]
    nothing_created(*roots)


def test_libvirt_uri_that_does_not_answer(roots, tmp_path, capsys):
    why = VagrantProvider.unusable()
    if why:
        pytest.skip(f"the vagrant provider cannot run here ({why}): its options are checked after that")
    uri = f"qemu+unix:///system?socket={tmp_path / 'no-libvirtd.sock'}"
    rc, err, _ = flatbed(capsys, "up", "--provider", "vagrant", "--libvirt-uri", uri)
    assert rc == USAGE and len(err) == 1
    assert err[0].startswith(f"flatbed: error: --libvirt-uri {uri} does not answer (cannot connect to libvirt"), err
    nothing_created(*roots)


def test_unknown_provider(roots, capsys):
    rc, err, _ = flatbed(capsys, "up", "--provider", "docker")
    assert rc == USAGE and len(err) == 1 and "argument --provider: invalid choice: 'docker'" in err[0]
    nothing_created(*roots)


@pytest.mark.parametrize("verb", [["status"], ["down"], ["exec", "controller-1", "--", "true"]])
def test_run_id_that_does_not_exist(roots, capsys, verb):
    rc, err, _ = flatbed(capsys, "--testbed", "fb0000ff", *verb)
    state, _ = roots
    assert rc == USAGE and err == [f"flatbed: error: no testbed 'fb0000ff' (no {state / 'fb0000ff' / 'state.json'})"]
    nothing_created(*roots)


def test_exec_without_a_command(roots, capsys):
    rc, err, _ = flatbed(capsys, "exec", "controller-1")
    assert rc == USAGE and err == ["flatbed: error: exec: no command given (flatbed exec NODE -- CMD ...)"]


# --- pytest options ----------------------------------------------------------------------------

def pytest_run(roots, *args: str) -> tuple[int, list[str]]:
    """The document suite's first boot module with ARGS: exit code and its ERROR lines (and
    argparse's ``pytest: error:`` line)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "e2e/test_23_boot.py",
                           "--provider", "nspawn", *args], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "FLATBED_STATE": str(roots[0]), "FLATBED_CACHE": str(roots[1])})
    output = (proc.stdout + proc.stderr).splitlines()
    assert "passed" not in proc.stdout and "error" not in proc.stdout.splitlines()[-1:], proc.stdout[-2000:]
    return proc.returncode, [line for line in output if (line.startswith("ERROR: ") or ": error: argument" in line)
                             and not line.startswith("ERROR: usage: ")]


def test_pytest_reuse_of_a_run_that_does_not_exist(roots):
    rc, errors = pytest_run(roots, "--reuse=fb0000ff")
    assert rc == PYTEST_USAGE and errors == [f"ERROR: --reuse: no testbed fb0000ff in {roots[0]} (testbeds: none)"]
    nothing_created(*roots)


def test_pytest_bad_topology_is_one_error_line_per_problem_before_any_test(roots, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(edited(('cidr = "10.0.0.0/24"', 'cidr = "10.0.0.0/33"'),
                          ('name = "compute-2"', 'name = "compute-1"')))
    rc, errors = pytest_run(roots, "--topology", str(bad))
    assert rc == PYTEST_USAGE and [e.split(": ")[2] for e in errors] == ["networks.flat.cidr", "nodes[2].name"], errors
    nothing_created(*roots)


def test_pytest_cirros_image_that_does_not_exist(roots, tmp_path):
    rc, errors = pytest_run(roots, "--cirros-image", str(tmp_path / "gone.qcow2"))
    assert rc == PYTEST_USAGE and errors == [f"ERROR: --cirros-image {tmp_path / 'gone.qcow2'}: no such file"]
    nothing_created(*roots)


def test_pytest_unknown_destroy_policy(roots):
    rc, errors = pytest_run(roots, "--destroy=sometimes")
    assert rc == PYTEST_USAGE and len(errors) == 1 and "--destroy: invalid choice: 'sometimes'" in errors[0], errors
    nothing_created(*roots)


# --- the host ----------------------------------------------------------------------------------

FAKE_VAGRANT = """\
#!/bin/sh
case "$*" in
  --version) echo "Vagrant {vagrant}" ;;
  "plugin list --machine-readable")
    [ -z "{plugin}" ] && exit 0
    echo "1,,plugin-name,vagrant-libvirt"
    echo "1,vagrant-libvirt,plugin-version,{plugin}%!(VAGRANT_COMMA) system" ;;
  *) exit 1 ;;
esac
"""


@pytest.mark.parametrize(("vagrant", "plugin", "line"), [
    (None, None, r"vagrant is not installed \(\./run setup --provider vagrant installs the VM packages\)"),
    ("2.2.19", "0.11.2", r"Vagrant 2\.2\.19 is too old \(flatbed needs 2\.3 or later, as Debian 12 ships\)"),
    ("2.3.4", "0.7.0", r"vagrant-libvirt 0\.7\.0 is too old \(flatbed needs 0\.11 or later, as Debian 12 ships\)"),
    ("2.3.4", "", r"the vagrant-libvirt plugin is missing \(apt-get install vagrant-libvirt\)"),
], ids=["vagrant missing", "vagrant too old", "vagrant-libvirt too old", "vagrant-libvirt missing"])
def test_vagrant_missing_or_too_old(roots, tmp_path, monkeypatch, capsys, vagrant, plugin, line):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if vagrant is not None:
        (bin_dir / "vagrant").write_text(FAKE_VAGRANT.format(vagrant=vagrant, plugin=plugin))
        (bin_dir / "vagrant").chmod(0o755)
        path = os.pathsep.join([str(bin_dir), os.environ["PATH"]])   # it shadows a real one
        missing = [tool for tool in TOOLS if tool != "vagrant" and shutil.which(tool, path=path) is None]
        if missing:
            pytest.skip(f"the VM provider's other tools are not installed here ({', '.join(missing)})")
    else:
        path = str(bin_dir)
    monkeypatch.setenv("PATH", path)
    monkeypatch.setattr(VagrantProvider, "_plugin_checked", None)
    rc, err, _ = flatbed(capsys, "up", "--provider", "vagrant")
    assert rc == FAILURE and len(err) == 1, err
    assert re.fullmatch(rf"flatbed: error: provider vagrant cannot run here: {line}", err[0]), err
    nothing_created(*roots)


@pytest.fixture(scope="module")
def base_digest() -> str:
    """The base image's input hash on this host (what `up` looks for in the cache)."""
    return reuse.expected_images()["base"]


@pytest.mark.parametrize("damage", ["marker of another hash", "output missing"])
def test_corrupt_image_cache_entry(roots, capsys, base_digest, damage):
    state, images = roots
    entry = images / f"base-{base_digest[:16]}"
    (entry / "root").mkdir(parents=True)
    (entry / "manifest.json").write_text("{}")
    marker = ("0" * 64 if damage == "marker of another hash" else base_digest) + "\n2026-01-01T00:00:00+0000\n"
    (entry / cache.MARKER).write_text(marker)
    before = sorted(p.name for p in images.iterdir())
    rc, err, _ = flatbed(capsys, "up", "--provider", "nspawn")
    why = "its marker names input hash 0000000000000000" if damage.startswith("marker") else \
        "root/usr/lib/systemd/systemd missing"
    assert rc == FAILURE and err == [f"flatbed: error: image cache entry {entry} is corrupt ({why}); remove it "
                                   f"(`rm -rf {entry}`, once no testbed uses it) and run again to rebuild it"], err
    nothing_created(state, images, before)
    assert sorted(p.name for p in entry.iterdir()) == [cache.MARKER, "manifest.json", "root"]   # left as it was


def test_low_disk_space_under_the_image_cache(roots, capsys, monkeypatch, base_digest):
    state, images = roots
    images.mkdir()
    usage = shutil.disk_usage(images)
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda path: usage._replace(free=300 * 2**20))
    rc, err, _ = flatbed(capsys, "up", "--provider", "nspawn")
    assert rc == FAILURE and err == [f"flatbed: error: only 300 MiB free under {images}; building the base image needs "
                                   f"2.0 GiB (free some space, or point FLATBED_CACHE elsewhere)"], err
    nothing_created(state, images, [])
