"""``flatbed clean`` after a bring-up killed with SIGKILL leaves nothing, and touches nothing else.

``flatbed up`` runs in a subprocess until its containers are running (provisioning not done), then
gets SIGKILL: no handler runs, the containers (their own sessions) outlive it, the state file says
"creating" with a dead owner. ``flatbed clean`` must remove all of it, list what it removed, and
leave alone what is not a leftover: an untagged look-alike namespace, and every other run's
resources (the session's testbed, other users' testbeds on this host).
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time

import pytest

from flatbed import hostnet, state
from flatbed.checks.runs import FlatbedCli, leftovers_of
from flatbed.checks.timeouts import RUN_TIMEOUT
from flatbed.waiters import wait_until

pytestmark = pytest.mark.own_testbeds

DECOY = f"fbdecoy-{os.getpid()}"   # "fb" but not a run tag (fb + 6 hex digits + "-"): clean must not touch it
# The progress line saying the nodes run, provisioning not done (containers; VMs), and the
# namespace every testbed of a provider has (the switch; the private libvirtd's, the outside host).
NODES_RUNNING = re.compile(r"containers running|vagrant: \d+ VMs up in")
OWN_NAMESPACE = {"nspawn": "sw", "vagrant": "outside"}


def start_up_and_kill_it_mid_bring_up(cli: FlatbedCli) -> str:
    proc = cli.popen("up", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines: list[str] = []
    selector = selectors.DefaultSelector()
    selector.register(proc.stderr, selectors.EVENT_READ)

    def containers_running() -> bool:
        for _ in selector.select(timeout=0.5):
            line = proc.stderr.readline()
            if line:
                lines.append(line)
        if proc.poll() is not None:
            raise AssertionError(f"flatbed up ended (rc {proc.returncode}) before it was killed:\n{''.join(lines)}")
        return any(NODES_RUNNING.search(line) for line in lines)

    try:
        wait_until(containers_running, timeout=RUN_TIMEOUT, interval=0, what="`flatbed up` to start its nodes",
                   describe=lambda: "".join(lines)[-1000:])
        run = cli.testbed_of(proc.pid)  # while it lives: its state file names it as the owner
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert not any("provisioned as compute" in line for line in lines), "killed too late: bring-up was done"
    return run


def test_clean_after_sigkill_mid_bring_up_leaves_nothing(flatbed_cli):
    cli = flatbed_cli
    subprocess.run(["ip", "netns", "add", DECOY], check=True)
    try:
        run = start_up_and_kill_it_mid_bring_up(cli)
        others = {ns for ns in hostnet.list_namespaces(state.RUN_PREFIX) if not ns.startswith(run)}
        # Testbeds up in our state root (the session's, when e2e/ runs whole) must survive clean.
        ours_up = {ns for ns in others if ns.split("-")[0] in
                   {st.run_id for st in state.list_testbeds() if st.status == "up"}}
        # What the killed run left: its namespaces, running containers, a state file saying "creating".
        left = leftovers_of(run)
        assert any(item.startswith(f"namespace {run}-") for item in left), left
        assert any(item.startswith("process ") for item in left), left
        recorded = state.TestbedState.load(run)
        assert recorded.status == "creating"
        provider = recorded.provider

        started = time.monotonic()
        out = cli.run("clean").stdout
        took = time.monotonic() - started
        assert f"removed {run} (bring-up interrupted (its process is gone)):" in out, out
        own = OWN_NAMESPACE[provider]
        assert f"  namespace {run}-{own}" in out and f"  state file {state.state_root() / run / 'state.json'}" in out
        assert leftovers_of(run) == [], out
        # Nothing else was touched: the look-alike, our testbeds that are up, and no other run's
        # namespace is among what clean removed (other users' testbeds may come and go meanwhile).
        assert hostnet.exists(DECOY)
        assert ours_up <= set(hostnet.list_namespaces(state.RUN_PREFIX)), out
        assert not [ns for ns in others if f"  namespace {ns}" in out], out
        assert "nothing to clean" in cli.run("clean").stdout
        assert took < 60, f"clean took {took:.0f} s"
    finally:
        subprocess.run(["ip", "netns", "del", DECOY], check=False)
