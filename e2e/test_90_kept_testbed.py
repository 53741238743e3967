"""A kept testbed, end to end, the way a user meets one (issue 8's "done when").

1. A deliberately failing test — written into a temp dir here, never shipped: a listing that
   differs — runs in a subprocess under ``--destroy=passing`` with JUnit and HTML reports: its
   testbed stays up, the run says how to reach it, the failing test got an artifact bundle; the
   JUnit file names the bundle and the run id (where this module reads the run id from), the
   HTML report links the bundle and shows the testbed's picture and the listing diff.
2. ``flatbed status``/``exec``/``ssh``/``boot``/``console``/``collect``/``status --svg``/``delete``
   reach that testbed, a guest included.
3. ``pytest --reuse=RUN`` of a small module (written here too) runs on it in seconds: a guest
   boots and leases, a test of the document's starting point skips with its reason, the run keeps
   the testbed and finds it left as found; another topology is refused with one line. That the
   *whole* suite is reuse-safe (``pytest e2e/ --reuse=RUN`` green, left as found) is the
   ``whole_suite`` test: minutes, run nightly, deselected by CI with ``-m 'not whole_suite'``.
4. ``flatbed down`` removes it with nothing left.

Every inner run and CLI call carries the session's topology, provider and options
(fixtures/cli.py). The tests share the kept testbed in order; it is removed at the end whatever
happens.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from flatbed.checks.runs import REPO, FlatbedCli, junit_outcomes, leftovers_of, read_until
from flatbed.checks.timeouts import LEASE_TIMEOUT, SSH_TIMEOUT
from flatbed.cloud import parse_fixed_list
from flatbed.testbed import Testbed
from flatbed.topology import DEFAULT_TOPOLOGY
from flatbed.topology import load as load_topology
from flatbed.waiters import wait_until
from flatbed_fixtures.reuse import require_before_any_guest

FAILING_TEST = '''\
"""Deliberately failing (written by e2e/test_90_kept_testbed.py): boots a guest, pings it, then a
listing differs."""

import pytest

from flatbed.checks.compare import assert_listing
from flatbed.checks.console import wait_for_lease


@pytest.mark.flat_pcap
def test_boots_a_guest_then_fails(guest, controller):
    wait_for_lease(guest)
    controller.check(f"ping -c 2 -W 5 {guest.ip}")
    assert_listing(["deliberate failure: the testbed must be kept (--destroy=passing)"],
                   controller.check("brctl show"), "brctl show on the controller")
'''
SMALL_REUSE_RUN = '''\
"""A small run on a kept testbed (written by e2e/test_90_kept_testbed.py)."""

from flatbed.checks.console import wait_for_lease


def test_a_guest_boots_and_leases(guest):
    wait_for_lease(guest)


def test_the_documents_start(before_any_guest):
    raise AssertionError("a kept testbed that had guests is not the document's starting point")
'''
GUEST = "probe"

pytestmark = pytest.mark.own_testbeds


@dataclass
class Kept:
    run_id: str
    output: str
    junit: Path
    html: Path
    artifacts: Path


@pytest.fixture(scope="module")
def kept(flatbed_cli: FlatbedCli, tmp_path_factory: pytest.TempPathFactory):
    where = tmp_path_factory.mktemp("deliberate")
    (where / "test_deliberate_failure.py").write_text(FAILING_TEST)
    junit, report, artifacts = where / "junit.xml", where / "report.html", where / "artifacts"
    proc = flatbed_cli.pytest("--rootdir", str(where),
                              "--destroy=passing", f"--junitxml={junit}", f"--html={report}", "--self-contained-html",
                              f"--artifacts={artifacts}", "test_deliberate_failure.py", cwd=where)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and junit.exists(), f"rc {proc.returncode}:\n{output[-4000:]}"
    run_id = properties(junit)["flatbed_run_id"]
    yield Kept(run_id, output, junit, report, artifacts)
    if flatbed_cli.run("--testbed", run_id, "status", check=False).returncode != 2:
        flatbed_cli.run("--testbed", run_id, "down", check=False)   # a test before `down` failed


def properties(junit: Path) -> dict[str, str]:
    """The one test case's JUnit <properties> (the last value of each name)."""
    case = next(ET.parse(junit).getroot().iter("testcase"))
    return {p.get("name"): p.get("value") for p in case.iter("property")}


def fixed_ip(cli: FlatbedCli, run_id: str, controller: str, address: str):
    out = cli.run("--testbed", run_id, "exec", controller, "--", "nova-manage", "fixed", "list").stdout
    return next(row for row in parse_fixed_list(out) if row.address == address)


def test_failing_run_keeps_its_testbed_and_says_how_to_reach_it(kept, flatbed_cli):
    run = kept.run_id
    assert "deliberate failure" in kept.output
    for hint in (f"flatbed --testbed {run} status", f"flatbed --testbed {run} ssh", f"pytest e2e/ --reuse={run}",
                 f"flatbed --testbed {run} down"):
        assert hint in kept.output
    assert f"testbed {run} kept (--destroy=passing, 1 failed)" in kept.output
    bundle = re.search(r"artifacts of \S+test_boots_a_guest_then_fails: (\S+)", kept.output)
    assert bundle, "the failing test got no artifact bundle"
    assert re.search(rf"^{run}\s+\S+\s+up\s", flatbed_cli.run("list").stdout, re.M)


def test_reports_name_the_bundle_and_show_the_picture_and_the_diff(kept):
    props = properties(kept.junit)
    bundle = Path(props["flatbed_bundle"])
    assert props["flatbed_worker"] == "main" and Path(props["flatbed_session"]) == kept.artifacts
    assert bundle.parent == kept.artifacts and (bundle / "MANIFEST.txt").is_file()
    diff = (bundle / "listing.diff").read_text()
    assert "-deliberate failure: the testbed must be kept (--destroy=passing)" in diff
    assert re.search(r"^\+bridge name\s+bridge id", diff, re.M), diff     # brctl's header, as it came
    assert "<svg" in (bundle / "testbed.svg").read_text()
    # the flat network's traffic during the test: the controller's pings to the guest
    pcap = subprocess.run(["tcpdump", "-n", "-r", str(bundle / "flat.pcap"), "icmp"], capture_output=True,
                          text=True, check=True).stdout
    assert re.search(r"IP (\S+) > (\S+): ICMP echo request", pcap) and "ICMP echo reply" in pcap, pcap
    # the session records it; the end of the run lists it with its path
    record = json.loads((kept.artifacts / "session.json").read_text())
    assert [b["path"] for b in record["bundles"]] == [str(bundle)]
    assert [(t["run_id"], t["outcome"]) for t in record["testbeds"]] == [(kept.run_id, "kept")]
    assert f"  {bundle}  (" in kept.output
    page = kept.html.read_text()
    assert bundle.as_uri() in page                                   # the link to the bundle
    assert "data:image/svg+xml;base64," in page                      # the picture, embedded
    assert html.escape("-deliberate failure: the testbed must be kept") in page or \
        "-deliberate failure: the testbed must be kept" in page     # the diff, embedded


def test_status_shows_it_healthy_with_the_guest_deleted(kept, flatbed_cli, topology):
    out = flatbed_cli.run("--testbed", kept.run_id, "status").stdout
    for node in topology.stack_nodes:
        assert re.search(rf"^{node.name}\s+{node.role}\s+{node.address}\s+running\s", out, re.M), out
    assert "guests: none" in out                      # the failing test's guest fixture still cleaned up
    assert out.rstrip().endswith("health: ok")
    # ... and its address really went back to the pool (force_dhcp_release).
    first = fixed_ip(flatbed_cli, kept.run_id, topology.controller.name, str(topology.flat.dhcp_start))
    assert first.in_pool, first


def test_before_any_guest_tests_skip_on_it_with_the_reason(kept):
    bed = Testbed.attach(kept.run_id)
    with pytest.raises(pytest.skip.Exception, match=r"1 guest\(s\) were booted on it before"):
        require_before_any_guest(bed)


def test_exec_and_ssh_reach_the_nodes(kept, flatbed_cli, topology):
    compute = topology.computes[0].name
    assert "Id" in flatbed_cli.run("--testbed", kept.run_id, "exec", compute, "--", "virsh", "list", "--all").stdout
    # An interactive shell on a terminal of the container's own, fed from a pipe.
    proc = flatbed_cli.run("--testbed", kept.run_id, "ssh", topology.controller.name,
                           input="hostname\ntty\nexit 7\n", check=False)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert re.search(rf"^{topology.controller.name}\r?$", proc.stdout, re.M)
    assert re.search(r"^/dev/pts/\d+\r?$", proc.stdout, re.M)


def test_a_guest_through_the_cli(kept, flatbed_cli, topology, tmp_path):
    run, compute = kept.run_id, topology.computes[-1].name
    cli = flatbed_cli
    out = cli.run("--testbed", run, "boot", GUEST, "--compute", compute).stdout
    booted = re.search(rf"^{GUEST}: ACTIVE on {compute} as (instance-[0-9a-f]{{8}}), ([0-9.]+) ", out, re.M)
    assert booted, out
    instance, ip = booted.groups()

    # console: follow console.log until the lease line shows (a real `tail -F` on the compute).
    follow = cli.popen("--testbed", run, "console", GUEST, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lease = re.compile(rf"lease of {re.escape(ip)} obtained", re.I)
    try:
        seen = read_until(follow, lease, LEASE_TIMEOUT)
    finally:
        follow.terminate()
        follow.wait(timeout=30)
    assert lease.search(seen) and "Linux version" in seen, seen[-2000:]     # from the first line on
    # Stopping the CLI stops the tail on the compute too (the signal takes a moment to land there).
    wait_until(lambda: "tail -n +1 -F" not in cli.run("--testbed", run, "exec", compute, "--", "ps", "-eo",
                                                         "pid,args").stdout,
               timeout=10, what=f"the console's tail on {compute} to stop")
    assert re.search(rf"lease of {re.escape(ip)}", cli.run("--testbed", run, "console", GUEST, "--no-follow").stdout,
                     re.I)

    status = cli.run("--testbed", run, "status").stdout
    row = re.search(rf"^{GUEST}\s+ACTIVE\s+{re.escape(ip)}\s+(\S+)\s+(\S+)\s+yes\s+{compute}\s+{instance}", status,
                    re.M)
    assert row and row.group(2) == "leased", status

    # ssh through the controller as cirros (password login), a command and an interactive shell.
    proc = cli.run("--testbed", run, "ssh", GUEST, "--wait", str(SSH_TIMEOUT), "--", "id", "-un")
    assert proc.stdout.strip() == "cirros"
    shell = cli.run("--testbed", run, "ssh", GUEST, input="ip -4 -o addr show eth0\nexit 5\n", check=False)
    assert shell.returncode == 5 and ip in shell.stdout

    svg = tmp_path / "testbed.svg"
    cli.run("--testbed", run, "status", "--svg", str(svg))
    picture = html.unescape(svg.read_text())          # graphviz writes "-" as &#45;
    assert "<svg" in picture and GUEST in picture and ip in picture and compute in picture

    bundle = tmp_path / "bundle"
    cli.run("--testbed", run, "collect", str(bundle))
    assert "DHCPACK" in (bundle / topology.controller.name / "syslog-dnsmasq.txt").read_text()
    assert re.search(rf"lease of {re.escape(ip)}", (bundle / "guests" / compute / instance / "console.log").read_text(),
                     re.I)
    assert "<domain" in (bundle / "guests" / compute / instance / "libvirt.xml").read_text()
    assert ip in (bundle / topology.controller.name / "hostsfile.txt").read_text()
    for node in topology.stack_nodes:
        assert (bundle / node.name / "iptables-save.txt").exists() and (bundle / node.name / "brctl-show.txt").exists()

    out = cli.run("--testbed", run, "delete", GUEST).stdout
    assert f"{ip} back in the pool" in out
    assert fixed_ip(cli, run, topology.controller.name, ip).in_pool


def test_reuse_runs_a_small_module_on_it_in_seconds(kept, flatbed_cli, tmp_path):
    (tmp_path / "test_small_reuse.py").write_text(SMALL_REUSE_RUN)
    junit = tmp_path / "junit.xml"
    proc = flatbed_cli.pytest("--rootdir", str(tmp_path), f"--reuse={kept.run_id}", "--destroy=never",
                              f"--junitxml={junit}", "-rs", "test_small_reuse.py", cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert f"reusing testbed {kept.run_id}" in output
    outcomes = {case.name: case.outcome for case in junit_outcomes(junit)}
    assert outcomes == {"test_a_guest_boots_and_leases": "passed", "test_the_documents_start": "skipped"}
    assert re.search(r"SKIPPED .*needs testbed \S+ as before any guest, but", output), output[-2000:]
    assert f"testbed {kept.run_id} kept (--destroy=never, reused)" in output     # it serves the next run too
    assert "not left as found" not in output


@pytest.mark.whole_suite
def test_reuse_runs_the_whole_suite_green_on_it(kept, flatbed_cli):
    proc = flatbed_cli.pytest("e2e/", f"--reuse={kept.run_id}", "--destroy=never", "-q")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert f"reusing testbed {kept.run_id}" in output
    assert re.search(r"\d+ passed", output) and "failed" not in output.split("short test summary")[-1]
    assert f"testbed {kept.run_id} kept (--destroy=never, reused)" in output
    assert "not left as found" not in output


def test_reuse_refuses_another_topology_in_one_line(kept, flatbed_cli, topology):
    other = next(path for path in (REPO / "topologies" / "alt.toml", DEFAULT_TOPOLOGY)
                 if load_topology(path).digest != topology.digest)
    proc = flatbed_cli.pytest("e2e/", f"--reuse={kept.run_id}", "--topology", str(other))
    assert proc.returncode == 4
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and f"testbed {kept.run_id} was built from another topology" in errors[0]


def test_down_leaves_nothing(kept, flatbed_cli):
    own = {"nspawn": "sw", "vagrant": "outside"}[Testbed.attach(kept.run_id).state.provider]  # the testbed's namespace
    out = flatbed_cli.run("--testbed", kept.run_id, "down").stdout
    assert f"removed namespace {kept.run_id}-{own}" in out
    assert leftovers_of(kept.run_id) == []
    assert kept.run_id not in [t["run_id"] for t in json.loads(flatbed_cli.run("list", "--json").stdout)["testbeds"]]
