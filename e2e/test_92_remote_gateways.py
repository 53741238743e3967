"""Beyond one host, on xdist's own distribution: two ``--tx ssh=...`` gateways (execnet), both
this machine, each running §2.3 against a testbed of its own.

- an OpenSSH ``sshd`` started here on 127.0.0.1 (a free port, a throw-away host key and user key,
  root login by that key only), reached through an ssh_config naming two hosts, ``kvm1`` and ``kvm2``;
- two checkouts of the project (its tracked files), each set up with ``./run setup``;
- the controller, as the README shows it: run from a directory that has no ``e2e/`` (xdist passes
  the test paths to the hosts as they are; a local path would need ``--rsyncdir``, which xdist
  deprecates), with the plugin from the installed entry point,
  ``pytest --dist each --tx ssh=-F CONFIG kvm1//python=CO1/.venv/bin/python//chdir=CO1 --tx ... e2e/test_23_boot.py``;
- its JUnit file has every test of ``test_23_boot.py`` once per gateway, each with the run id of
  that gateway's own testbed; every testbed is gone afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flatbed.waiters import wait_until

REPO = Path(__file__).resolve().parents[1]
SSHD = Path("/usr/sbin/sshd")
MODULE = "e2e/test_23_boot.py"

pytestmark = [pytest.mark.own_testbeds, pytest.mark.remote,
              pytest.mark.skipif(not SSHD.exists(), reason="needs OpenSSH's sshd (apt-get install openssh-server)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An sshd on loopback and an ssh_config for gw1/gw2; yields {"config": path}."""
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"flatbed-test-{key}",
                        "-f", str(d / key)], check=True)
    port = free_port()
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {d / 'host'}\nAuthorizedKeysFile {d / 'user.pub'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        f"UsePAM no\nPidFile {d / 'sshd.pid'}\nStrictModes no\nAcceptEnv FLATBED_STATE FLATBED_CACHE\n")
    (d / "ssh_config").write_text(
        f"Host kvm1 kvm2\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {d / 'user'}\n"
        f"  IdentitiesOnly yes\n  StrictHostKeyChecking yes\n  UserKnownHostsFile {d / 'known_hosts'}\n"
        "  SendEnv FLATBED_STATE FLATBED_CACHE\n  LogLevel ERROR\n")
    host_pub = (d / "host.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    privsep = Path("/run/sshd")  # sshd's privilege separation directory (the package's tmpfiles make it)
    made_privsep = not privsep.exists()
    privsep.mkdir(exist_ok=True)
    sshd = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "wb"))
    try:
        def answers() -> bool:
            if sshd.poll() is not None:
                raise AssertionError(f"sshd exited {sshd.returncode}: {(d / 'sshd.log').read_text()[-500:]}")
            return subprocess.run(["ssh", "-F", str(d / "ssh_config"), "kvm1", "true"],
                                  capture_output=True).returncode == 0
        wait_until(answers, timeout=20, what=f"sshd on 127.0.0.1:{port} to accept the test key")
        yield {"config": d / "ssh_config"}
    finally:
        sshd.terminate()
        sshd.wait(timeout=20)
        if made_privsep:
            privsep.rmdir()


def checkout(dest: Path) -> Path:
    """The project's tracked files (as they are in the work tree) at ``dest``, set up with ./run setup."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name, follow_symlinks=False)
    setup = subprocess.run(["./run", "setup"], cwd=dest, capture_output=True, text=True, timeout=900)
    assert setup.returncode == 0, f"./run setup in {dest} failed:\n{setup.stderr[-2000:]}"
    return dest


@pytest.fixture(scope="module")
def checkouts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    roots = [tmp_path_factory.mktemp(f"checkout{n}") for n in (1, 2)]
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(checkout, roots))


def test_each_gateway_runs_the_boot_section_on_its_own_testbed(flatbed_cli, gateways, checkouts, tmp_path):
    provider = flatbed_cli.provider  # the fixture skips under --reuse: this spawns testbeds of its own
    if provider == "vagrant":
        pytest.skip("two VM testbeds at once on one host; on VMs, each gateway is a KVM host of its own")
    state = Path(os.environ.get("FLATBED_STATE", "/var/lib/flatbed/testbeds")) / "remote-gateways"
    env = {**os.environ, "FLATBED_STATE": str(state)}
    controller_dir = tmp_path / "controller"  # no e2e/ here: the paths go to the hosts as they are
    controller_dir.mkdir()
    junit = tmp_path / "junit.xml"
    tx = [f"--tx=ssh=-F {gateways['config']} {gw}//python={co}/.venv/bin/python//chdir={co}"
          for gw, co in zip(("kvm1", "kvm2"), checkouts, strict=True)]
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--dist", "each", *tx,
                          MODULE, "--provider", provider, "--destroy=always", f"--junitxml={junit}", "-q"],
                         cwd=controller_dir, env=env, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, f"controller run failed ({run.returncode}):\n{run.stdout[-4000:]}{run.stderr[-2000:]}"
    cases = ET.parse(junit).getroot().iter("testcase")
    by_gateway: dict[str, list[str]] = {}
    run_ids: dict[str, set[str]] = {}
    for case in cases:
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        gw = props.get("flatbed_worker", "?")
        by_gateway.setdefault(gw, []).append(case.get("name"))
        run_ids.setdefault(gw, set()).add(props.get("flatbed_run_id"))
    assert sorted(by_gateway) == ["gw0", "gw1"], f"tests ran on {sorted(by_gateway)}"
    assert sorted(by_gateway["gw0"]) == sorted(by_gateway["gw1"]) and by_gateway["gw0"]
    assert all(len(ids) == 1 and None not in ids for ids in run_ids.values()), run_ids
    assert run_ids["gw0"] != run_ids["gw1"], "each gateway brings up a testbed of its own"
    left = subprocess.run([sys.executable, "-m", "flatbed.cli", "list", "--json"], env=env, capture_output=True,
                          text=True, check=True)
    assert json.loads(left.stdout)["testbeds"] == [], left.stdout
