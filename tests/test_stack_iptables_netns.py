"""The IptablesManager on the real iptables, in a private network namespace made for the test.

Two things are checked against the kernel rather than the stand-in:
- the stand-in's canonical form (tests/fake_iptables.py) of every rule shape nova writes is what
  ``iptables -S`` prints, so the fast tests compare what a node would show;
- nova-api then nova-network, started with their real code, give the document's ``iptables -S``
  in the namespace; restarting nova-api flips the jumps.

Needs root and iptables (``apt-get install iptables``); skipped otherwise. Nothing leaves the
namespace, which is removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "stack"))

from fake_iptables import canonical  # noqa: E402
from test_stack_iptables import DOCUMENT_FILTER, DOCUMENT_NAT, Controller  # noqa: E402

from flatbed.checks import expect  # noqa: E402
from flatbed.checks.compare import assert_listing  # noqa: E402
from flatbed.topology import DEFAULT_TOPOLOGY  # noqa: E402
from flatbed.topology import load as load_topology  # noqa: E402
from nova.network import iptables  # noqa: E402

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iptables-restore", path="/usr/sbin:/usr/bin:/sbin:/bin") is None,
    reason="needs root and iptables (apt-get install iptables)")

# Every rule shape nova's code writes (network host, nova-api, compute firewall), in nova's text.
NOVA_RULES = {
    "filter": [
        "--in-interface br100 -j ACCEPT", "--out-interface br100 -j DROP",
        "-i br100 -p udp -m udp --dport 67 -j ACCEPT",
        "-s 0.0.0.0/0 -d 192.168.56.200 -p tcp -m tcp --dport 8775 -j ACCEPT",
        "-m state --state INVALID -j DROP", "-m state --state ESTABLISHED,RELATED -j ACCEPT",
        "-s 10.0.0.1 -p udp --sport 67 --dport 68 -j ACCEPT", "-s 10.0.0.0/24 -j ACCEPT",
        "-j ACCEPT -p icmp -s 0.0.0.0/0", "-j ACCEPT -p icmp -m icmp --icmp-type 8 -s 0.0.0.0/0",
        "-j ACCEPT -p icmp -m icmp --icmp-type 3/4 -s 10.1.0.0/16",
        "-j ACCEPT -p tcp --dport 22 -s 0.0.0.0/0", "-j ACCEPT -p udp -m multiport --dports 1000:2000 -s 0.0.0.0/0",
        "-d 10.0.0.2 -j DROP", "-j DROP",
    ],
    "nat": [
        "-s 10.42.8.0/22 -j SNAT --to-source 192.168.77.10",
        "-s 10.0.0.0/24 -d 192.168.56.200/32 -j ACCEPT",
        "-s 10.0.0.0/24 -d 10.0.0.0/24 -m conntrack ! --ctstate DNAT -j ACCEPT",
        "-s 0.0.0.0/0 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.56.200:8775",
    ],
}


def sh(*cmd: str, stdin: str | None = None) -> str:
    result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"fbtest-ipt-{os.getpid() % 100000}"
    sh("ip", "netns", "add", name)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_ns(ns: str) -> iptables.Executor:
    """An IptablesManager executor running the commands in namespace ``ns``."""
    def execute(argv: list[str], stdin: str | None) -> str:
        return sh("ip", "netns", "exec", ns, *argv, stdin=stdin)
    return execute


@pytest.mark.parametrize("table", sorted(NOVA_RULES))
def test_canonical_form_is_iptables_own(netns: str, table: str) -> None:
    rules = NOVA_RULES[table]
    restore = [f"*{table}", ":nova-probe - [0:0]", *(f"-A nova-probe {rule}" for rule in rules), "COMMIT", ""]
    sh("ip", "netns", "exec", netns, "iptables-restore", stdin="\n".join(restore))
    shown = sh("ip", "netns", "exec", netns, "iptables", "-t", table, "-S", "nova-probe").splitlines()
    assert shown[1:] == [f"-A nova-probe {canonical(rule)}" for rule in rules]


def test_document_listing_on_the_kernel(netns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    ctl = Controller(topo, tmp_path, monkeypatch, execute=in_ns(netns))

    def listing(table: str) -> str:
        return sh("ip", "netns", "exec", netns, "iptables", "-t", table, "-S")

    ctl.start_nova_api()
    ctl.start_nova_network()
    print(listing("filter"), listing("nat"), sep="\n")
    assert_listing(DOCUMENT_FILTER, listing("filter"), "iptables -t filter -S (kernel)")
    assert_listing(DOCUMENT_NAT, listing("nat"), "iptables -t nat -S (kernel)")
    ctl.start_nova_api()  # restarted after nova-network: its jumps come first now
    flipped = ("nova-api", "nova-network")
    assert_listing(expect.controller_filter(topo, flipped), listing("filter"), "filter after restarting nova-api")
    assert_listing(expect.controller_nat(topo, flipped), listing("nat"), "nat after restarting nova-api")
    assert (Path(ctl.conf.lock_path) / "nova-iptables.lock").exists()


def test_document_compute_listing_on_the_kernel(netns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """nova-compute's lazy bridge + firewall for instance 9: the document's §2.5 listing."""
    from test_stack_firewall import DOCUMENT_COMPUTE_LINES, MAC9, Compute, network

    compute = Compute(monkeypatch, tmp_path)
    compute.manager.execute = in_ns(netns)
    compute.boot(9, network("10.0.0.2", MAC9))
    listing = sh("ip", "netns", "exec", netns, "iptables", "-t", "filter", "-S")
    assert_listing(DOCUMENT_COMPUTE_LINES, listing, "compute iptables -S (kernel)")
    compute.driver.unfilter_instance({"id": 9})
    listing = sh("ip", "netns", "exec", netns, "iptables", "-t", "filter", "-S")
    assert "inst-9" not in listing and "-A nova-compute-sg-fallback -j DROP" in listing


def test_removing_inst_1_keeps_the_jumps_to_inst_10_to_12_on_the_kernel(
        netns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """remove_chain matches whole jump targets (Essex's substring match would drop inst-10..12's)."""
    from test_stack_firewall import WHOLE_WORD_LOCAL, Compute, whole_word_boots

    compute = Compute(monkeypatch, tmp_path)
    compute.manager.execute = in_ns(netns)
    whole_word_boots(compute)
    assert sh("ip", "netns", "exec", netns, "iptables", "-S", "nova-compute-local").splitlines() == [
        "-N nova-compute-local", *WHOLE_WORD_LOCAL]
    chains = sh("ip", "netns", "exec", netns, "iptables", "-S").splitlines()
    assert "-N nova-compute-inst-1" not in chains and "-N nova-compute-inst-10" in chains
