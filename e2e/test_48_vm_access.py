"""Nodes and guests reached on VMs with the field's tools, as a user does (vagrant provider only).

- ``flatbed ssh NODE -- CMD`` is OpenSSH's ``ssh -t`` (the run's key, the host key pinned at
  bring-up, from the testbed's ``outside`` namespace): the command's output and nothing else, its
  exit status, and a piped script's end reaching the node's terminal as the end of input;
- ``flatbed ssh GUEST -- ip a``: paramiko over a ``direct-tcpip`` channel of the controller's SSH
  connection, as cirros: the guest's eth0 with its address and MAC;
- ``flatbed console GUEST`` follows ``console.log`` over SSH from its first line; Ctrl-C (SIGINT)
  ends it with status 0 and leaves no ``tail`` on the compute.

After the document's sections (file order): it uses the session's two guests (``guest_pair``).
"""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from flatbed.checks.runs import REPO, FlatbedCli, read_until
from flatbed.checks.timeouts import LEASE_TIMEOUT, RUN_TIMEOUT
from flatbed.cloud import Guest
from flatbed.testbed import Testbed
from flatbed.waiters import wait_until
from flatbed_fixtures.cli import session_cli

pytestmark = [pytest.mark.vms, pytest.mark.usefixtures("vms_only")]

STOP_TIMEOUT = 30  # Ctrl-C → the CLI has stopped its ssh and exited


@pytest.fixture(scope="module")
def cli(pytestconfig: pytest.Config) -> FlatbedCli:
    """The session's options (not ``flatbed_cli``: these tests use the session's testbed, --reuse too)."""
    return session_cli(pytestconfig)


def as_bytes(cli: FlatbedCli, *args: str) -> subprocess.CompletedProcess:
    """``flatbed ARGS`` with its output as bytes: text mode would read the pty's CR LF as LF."""
    return subprocess.run(cli.argv(*args), input=b"", capture_output=True, env=cli.env, cwd=REPO, timeout=RUN_TIMEOUT)


def test_ssh_node_runs_the_command_on_a_terminal_of_its_own(testbed: Testbed, cli: FlatbedCli) -> None:
    name = testbed.topology.computes[0].name
    proc = as_bytes(cli, "--testbed", testbed.run_id, "ssh", name, "--", "hostname")
    assert proc.returncode == 0 and proc.stdout == f"{name}\r\n".encode(), proc   # the pty's line end; no echo, no NUL
    proc = as_bytes(cli, "--testbed", testbed.run_id, "ssh", name, "--", "sh", "-c", "tty; exit 7")
    assert proc.returncode == 7 and re.match(rb"/dev/pts/\d+\r\n$", proc.stdout), proc
    # A piped script: `cat` on the node's terminal ends when the script does (Ctrl-D there).
    proc = cli.run("--testbed", testbed.run_id, "ssh", name, "--", "cat", input="one\ntwo\n", timeout=RUN_TIMEOUT)
    words = proc.stdout.split()  # the terminal's echo of each line, and cat's copy
    assert proc.returncode == 0 and (words.count("one"), words.count("two")) == (2, 2), repr(proc.stdout)


def test_ssh_guest_shows_its_interfaces(testbed: Testbed, cli: FlatbedCli, guest_pair: list[Guest]) -> None:
    guest = guest_pair[0]
    out = cli.run("--testbed", testbed.run_id, "ssh", guest.name, "--", "ip", "a").stdout
    eth0 = out.split("eth0:", 1)[-1]
    assert f"link/ether {guest.mac} " in eth0 and f"inet {guest.ip}/" in eth0, out


def test_console_follows_over_ssh_and_ctrl_c_leaves_no_tail(testbed: Testbed, cli: FlatbedCli,
                                                           guest_pair: list[Guest]) -> None:
    guest = guest_pair[-1]
    follow = cli.popen("--testbed", testbed.run_id, "console", guest.name, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    lease = re.compile(rf"lease of {re.escape(guest.ip)} obtained", re.I)
    try:
        seen = read_until(follow, lease, LEASE_TIMEOUT)
    finally:
        follow.send_signal(signal.SIGINT)  # what Ctrl-C sends the CLI (its ssh is in a group of its own)
        rc = follow.wait(timeout=STOP_TIMEOUT)
    assert lease.search(seen) and "Linux version" in seen, seen[-2000:]   # from the first line on
    assert rc == 0, follow.stderr.read()
    compute = guest.node

    def tail_gone() -> bool:
        return f"tail -n +1 -F {guest.console_log}" not in compute.check(["ps", "-eo", "args"])

    wait_until(tail_gone, timeout=STOP_TIMEOUT, what=f"the console's tail on {guest.compute} to end")
