"""stack/nova/network/iptables.py: Essex's IptablesManager against the document's §2.1 listings.

nova-api and nova-network run their real start-up code (linux_net / FlatDHCPManager.init_host)
against a stand-in kernel (tests/fake_iptables.py: iptables-save/-restore with iptables'
canonical rule text, itself checked against the real iptables in test_stack_iptables_netns.py).
The resulting ``iptables -S`` must be the document's, line for line and in order.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "stack"))

from fake_iptables import FakeIptables, canonical  # noqa: E402
from test_stack_linux_net import FakeHost  # noqa: E402

from flatbed.checks import expect  # noqa: E402
from flatbed.checks.compare import assert_listing, listing_diff, normalise  # noqa: E402
from flatbed.topology import DEFAULT_TOPOLOGY, Topology  # noqa: E402
from flatbed.topology import load as load_topology  # noqa: E402
from nova import flags  # noqa: E402
from nova.db import Database  # noqa: E402
from nova.network import iptables, linux_net  # noqa: E402
from nova.network.manager import FlatDHCPManager  # noqa: E402

ALT_TOPOLOGY = REPO / "topologies" / "alt.toml"

# The document, §2.1: `iptables -t filter -S` on controller-1, verbatim.
DOCUMENT_FILTER = """
-P INPUT ACCEPT

-P FORWARD ACCEPT

-P OUTPUT ACCEPT

-N nova-api-FORWARD

-N nova-api-INPUT

-N nova-api-OUTPUT

-N nova-api-local

-N nova-filter-top

-N nova-network-FORWARD

-N nova-network-INPUT

-N nova-network-OUTPUT

-N nova-network-local

-A INPUT -j nova-network-INPUT

-A INPUT -j nova-api-INPUT

-A FORWARD -j nova-filter-top

-A FORWARD -j nova-network-FORWARD

-A FORWARD -j nova-api-FORWARD

-A OUTPUT -j nova-filter-top

-A OUTPUT -j nova-network-OUTPUT

-A OUTPUT -j nova-api-OUTPUT

-A nova-api-INPUT -d 192.168.56.200/32 -p tcp -m tcp --dport 8775 -j ACCEPT

-A nova-filter-top -j nova-network-local

-A nova-filter-top -j nova-api-local

-A nova-network-FORWARD -i br100 -j ACCEPT

-A nova-network-FORWARD -o br100 -j ACCEPT

-A nova-network-INPUT -i br100 -p udp -m udp --dport 67 -j ACCEPT

-A nova-network-INPUT -i br100 -p tcp -m tcp --dport 67 -j ACCEPT

-A nova-network-INPUT -i br100 -p udp -m udp --dport 53 -j ACCEPT

-A nova-network-INPUT -i br100 -p tcp -m tcp --dport 53 -j ACCEPT
"""

# The document, §2.1: `sudo iptables -t nat -S` on controller-1, verbatim.
DOCUMENT_NAT = """
-P PREROUTING ACCEPT

-P INPUT ACCEPT

-P OUTPUT ACCEPT

-P POSTROUTING ACCEPT

-N nova-api-OUTPUT

-N nova-api-POSTROUTING

-N nova-api-PREROUTING

-N nova-api-float-snat

-N nova-api-snat

-N nova-network-OUTPUT

-N nova-network-POSTROUTING

-N nova-network-PREROUTING

-N nova-network-float-snat

-N nova-network-snat

-N nova-postrouting-bottom

-A PREROUTING -j nova-network-PREROUTING

-A PREROUTING -j nova-api-PREROUTING

-A OUTPUT -j nova-network-OUTPUT

-A OUTPUT -j nova-api-OUTPUT

-A POSTROUTING -j nova-network-POSTROUTING

-A POSTROUTING -j nova-api-POSTROUTING

-A POSTROUTING -j nova-postrouting-bottom

-A nova-api-snat -j nova-api-float-snat

-A nova-network-POSTROUTING -s 10.0.0.0/24 -d 192.168.56.200/32 -j ACCEPT

-A nova-network-POSTROUTING -s 10.0.0.0/24 -d 10.128.0.0/24 -j ACCEPT

-A nova-network-POSTROUTING -s 10.0.0.0/24 -d 10.0.0.0/24 -m conntrack ! --ctstate DNAT -j ACCEPT

-A nova-network-PREROUTING -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.56.200:8775

-A nova-network-snat -j nova-network-float-snat

-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 192.168.56.200

-A nova-postrouting-bottom -j nova-network-snat

-A nova-postrouting-bottom -j nova-api-snat
"""

NOVA_API, NOVA_NETWORK = "nova-api", "nova-network"


def nova_conf(topo: Topology, state: Path) -> flags.Flags:
    """The controller's nova.conf as provisioning writes it, state moved into the test's dir."""
    def render(value: object) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)
    lines = [f"--{k}={render(v)}" for k, v in topo.nova_flags(topo.controller).items()]
    lines += [f"--state_path={state}", f"--networks_path={state}/networks", f"--lock_path={state}/lock"]
    return flags.parse("\n".join(lines) + "\n")


class Controller:
    """The controller's nova binaries, each with its own IptablesManager on one shared kernel."""

    def __init__(self, topo: Topology, state: Path, monkeypatch: pytest.MonkeyPatch,
                 execute: iptables.Executor | None = None) -> None:
        self.topo, self.conf, self.monkeypatch = topo, nova_conf(topo, state), monkeypatch
        self.kernel = FakeIptables()
        # iptables-save/-restore go to the stand-in, or to ``execute`` (a real kernel).
        self.execute = execute or self.kernel.execute
        # The host commands of ensure_bridge & co. succeed and change nothing; dnsmasq is not run.
        monkeypatch.setattr(linux_net, "execute", FakeHost({topo.flat.interface}, {}, {}))
        monkeypatch.setattr(linux_net, "_launch_dnsmasq", lambda argv, env: None)
        self.db = Database(self.conf.sqlite_path)
        FlatDHCPManager(self.conf, self.db).create_network(
            topo.flat.label, str(topo.flat.cidr), topo.flat.bridge, topo.flat.interface, topo.controller.name)

    def manager(self, binary: str) -> iptables.IptablesManager:
        manager = iptables.IptablesManager(binary, execute=self.execute, lock_path=self.conf.lock_path)
        self.monkeypatch.setattr(linux_net, "iptables_manager", manager)
        return manager

    def start_nova_api(self) -> None:
        """What nova-api's MetadataManager.init_host does to iptables."""
        self.manager(NOVA_API)
        linux_net.metadata_accept(self.conf)

    def start_nova_network(self) -> None:
        """nova-network's real start-up: NAT, metadata DNAT, bridge, gateway, dnsmasq rules."""
        self.manager(NOVA_NETWORK)
        FlatDHCPManager(self.conf, self.db).init_host()

    def filter(self) -> list[str]:
        return self.kernel.listing("filter")

    def nat(self) -> list[str]:
        return self.kernel.listing("nat")


@pytest.fixture
def default_topo() -> Topology:
    return load_topology(DEFAULT_TOPOLOGY)


@pytest.fixture
def alt_topo() -> Topology:
    return load_topology(ALT_TOPOLOGY)


# --- the expectation itself -------------------------------------------------------------------

def test_expectation_is_the_documents_listing(default_topo: Topology) -> None:
    assert_listing(DOCUMENT_FILTER, expect.controller_filter(default_topo), "expect.controller_filter")
    assert_listing(DOCUMENT_NAT, expect.controller_nat(default_topo), "expect.controller_nat")


def test_expectation_follows_the_alt_topology(alt_topo: Topology) -> None:
    listing = "\n".join(expect.controller_filter(alt_topo) + expect.controller_nat(alt_topo))
    for wanted in ("-A nova-network-FORWARD -i brflat -j ACCEPT",
                   "-A nova-api-INPUT -d 192.168.77.10/32 -p tcp -m tcp --dport 8775 -j ACCEPT",
                   "-A nova-network-POSTROUTING -s 10.42.8.0/22 -d 10.200.0.0/24 -j ACCEPT",
                   "-A nova-network-snat -s 10.42.8.0/22 -j SNAT --to-source 192.168.77.10"):
        assert wanted in listing
    assert "br100" not in listing and "10.0.0." not in listing and "192.168.56." not in listing


# --- nova-api then nova-network, as the document's controller was started ---------------------

def test_controller_listing_is_the_documents(default_topo: Topology, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ctl = Controller(default_topo, tmp_path, monkeypatch)
    ctl.start_nova_api()
    ctl.start_nova_network()
    assert_listing(DOCUMENT_FILTER, ctl.filter(), "iptables -t filter -S")
    assert_listing(DOCUMENT_NAT, ctl.nat(), "iptables -t nat -S")


def test_controller_listing_alt_topology(alt_topo: Topology, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ctl = Controller(alt_topo, tmp_path, monkeypatch)
    ctl.start_nova_api()
    ctl.start_nova_network()
    assert_listing(expect.controller_filter(alt_topo), ctl.filter(), "iptables -t filter -S")
    assert_listing(expect.controller_nat(alt_topo), ctl.nat(), "iptables -t nat -S")


def test_nova_network_alone(default_topo: Topology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without nova-api: the document's listing minus every nova-api line."""
    ctl = Controller(default_topo, tmp_path, monkeypatch)
    ctl.start_nova_network()
    alone = (NOVA_NETWORK,)
    assert_listing(expect.only(normalise(DOCUMENT_FILTER), alone), ctl.filter(), "filter")
    assert_listing(expect.only(normalise(DOCUMENT_NAT), alone), ctl.nat(), "nat")
    assert expect.only(expect.controller_filter(default_topo), alone) == expect.controller_filter(default_topo, alone)


# --- who applied last ----------------------------------------------------------------------

def test_started_the_other_way_round_the_jumps_flip(default_topo: Topology, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ctl = Controller(default_topo, tmp_path, monkeypatch)
    ctl.start_nova_network()
    ctl.start_nova_api()
    flipped = (NOVA_API, NOVA_NETWORK)
    assert listing_diff(DOCUMENT_FILTER, ctl.filter()) is not None
    assert_listing(expect.controller_filter(default_topo, flipped), ctl.filter(), "filter")
    assert_listing(expect.controller_nat(default_topo, flipped), ctl.nat(), "nat")


def test_restart_flip(default_topo: Topology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Restarting nova-network keeps the document's order; restarting nova-api flips every pair.

    In Essex each apply re-inserts the binary's rules before the existing ones, so the binary
    that applied last has its jumps first — except ``-j nova-filter-top`` (a top rule, always
    first) and ``-j nova-postrouting-bottom`` (names no binary: the older copy, last, is kept).
    """
    ctl = Controller(default_topo, tmp_path, monkeypatch)
    ctl.start_nova_api()
    ctl.start_nova_network()
    ctl.start_nova_network()  # a restart: a new manager, the same rules
    assert_listing(DOCUMENT_FILTER, ctl.filter(), "filter after restarting nova-network")
    assert_listing(DOCUMENT_NAT, ctl.nat(), "nat after restarting nova-network")

    ctl.start_nova_api()
    filt, nat = ctl.filter(), ctl.nat()
    assert filt.index("-A INPUT -j nova-api-INPUT") < filt.index("-A INPUT -j nova-network-INPUT")
    assert filt[filt.index("-A FORWARD -j nova-filter-top"):][:3] == [
        "-A FORWARD -j nova-filter-top", "-A FORWARD -j nova-api-FORWARD", "-A FORWARD -j nova-network-FORWARD"]
    assert [line for line in nat if line.startswith("-A POSTROUTING")] == [
        "-A POSTROUTING -j nova-api-POSTROUTING", "-A POSTROUTING -j nova-network-POSTROUTING",
        "-A POSTROUTING -j nova-postrouting-bottom"]
    assert_listing(expect.controller_filter(default_topo, (NOVA_API, NOVA_NETWORK)), filt, "filter")

    ctl.start_nova_network()  # and back
    assert_listing(DOCUMENT_FILTER, ctl.filter(), "filter after restarting nova-network again")
    assert_listing(DOCUMENT_NAT, ctl.nat(), "nat after restarting nova-network again")


def test_restart_beside_a_running_dnsmasq_keeps_its_input_rules(default_topo: Topology, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """nova-network restarted while its dnsmasq runs HUPs it; INPUT 67/53 must stay (Grizzly's fix)."""
    ctl = Controller(default_topo, tmp_path, monkeypatch)
    ctl.start_nova_api()
    ctl.start_nova_network()
    hups: list[int] = []
    monkeypatch.setattr(linux_net, "dnsmasq_pid_for", lambda conf, dev: 424242)
    monkeypatch.setattr(linux_net, "_cmdline", lambda pid: "/usr/sbin/dnsmasq --dhcp-hostsfile=/x/nova-br100.conf")
    monkeypatch.setattr(linux_net, "_launch_dnsmasq", lambda argv, env: pytest.fail("launched a second dnsmasq"))
    monkeypatch.setattr(os, "kill", lambda pid, sig: hups.append(pid))
    ctl.start_nova_network()
    assert hups == [424242]
    assert_listing(DOCUMENT_FILTER, ctl.filter(), "filter after a restart that HUPed dnsmasq")


def test_allocation_reapplies_without_changing_the_listing(default_topo: Topology, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Booting a guest re-runs nova-network's host set-up; iptables must come out the same."""
    ctl = Controller(default_topo, tmp_path, monkeypatch)
    ctl.start_nova_api()
    ctl.start_nova_network()
    before = (ctl.filter(), ctl.nat())
    restores = ctl.kernel.commands.count(["iptables-restore"])
    FlatDHCPManager(ctl.conf, ctl.db).allocate_for_instance(9, "cirros")
    assert ctl.kernel.commands.count(["iptables-restore"]) > restores
    assert (ctl.filter(), ctl.nat()) == before


# --- what a binary owns --------------------------------------------------------------------

def test_apply_keeps_foreign_rules_and_rewrites_its_own(tmp_path: Path) -> None:
    kernel = FakeIptables()
    kernel.tables["filter"]["INPUT"].append("-p tcp -m tcp --dport 22 -j ACCEPT")
    manager = iptables.IptablesManager("nova-network", execute=kernel.execute, lock_path=str(tmp_path))
    manager.apply()
    assert kernel.tables["filter"]["INPUT"] == ["-j nova-network-INPUT", "-p tcp -m tcp --dport 22 -j ACCEPT"]
    # A rule written by hand into the binary's own chain is gone after its next apply.
    kernel.tables["filter"]["nova-network-INPUT"].append("-p tcp -m tcp --dport 80 -j ACCEPT")
    kernel.tables["filter"]["INPUT"].append("-p tcp -m tcp --dport 443 -j ACCEPT")
    manager.apply()
    assert kernel.tables["filter"]["nova-network-INPUT"] == []
    assert kernel.tables["filter"]["INPUT"][-1] == "-p tcp -m tcp --dport 443 -j ACCEPT"
    first = kernel.listing("filter")
    manager.apply()
    assert kernel.listing("filter") == first  # idempotent


def test_modify_rules_inserts_before_existing_rules() -> None:
    manager = iptables.IptablesManager("nova-b", execute=lambda argv, stdin: "")
    table = manager.ipv4["filter"]
    table.add_rule("INPUT", "-p udp --dport 53 -j ACCEPT")
    saved = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             ":nova-a-INPUT - [0:0]", ":nova-filter-top - [0:0]", ":nova-b-INPUT - [0:0]",
             "-A INPUT -j nova-a-INPUT", "-A INPUT -j nova-b-INPUT", "-A FORWARD -j nova-filter-top",
             "-A nova-b-INPUT -j DROP", "COMMIT"]
    lines = manager.modify_rules(saved, table)
    assert "-A nova-b-INPUT -j DROP" not in lines  # every line naming the binary went
    assert lines.count(":nova-filter-top - [0:0]") == 1 and lines.count("-A FORWARD -j nova-filter-top") == 1
    rules = [line for line in lines if line.startswith("-A INPUT")]
    assert rules == ["-A INPUT -j nova-b-INPUT", "-A INPUT -j nova-a-INPUT"]
    assert lines.index("-A nova-b-INPUT -p udp --dport 53 -j ACCEPT") < lines.index("-A INPUT -j nova-a-INPUT")
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"


def test_modify_rules_needs_a_saved_table() -> None:
    manager = iptables.IptablesManager("nova-b", execute=lambda argv, stdin: "")
    with pytest.raises(iptables.IptablesError, match="no chain declarations"):
        manager.modify_rules(["", "COMMIT"], manager.ipv4["filter"])


def test_binary_name() -> None:
    assert iptables.binary_name("/usr/bin/nova-network") == "nova-network"
    assert iptables.binary_name("/usr/bin/nova-api-metadata") == "nova-api-metadat"  # 16 characters
    with pytest.raises(ValueError, match="1 to 16 characters"):
        iptables.IptablesManager("nova-api-metadata-x")


def test_table_interface() -> None:
    table = iptables.IptablesManager("nova-compute").ipv4["filter"]
    with pytest.raises(ValueError, match="Unknown chain: 'inst-9'"):
        table.add_rule("inst-9", "-j DROP")
    for chain in ("inst-1", "inst-10", "sg-fallback"):
        table.add_chain(chain)
    table.add_rule("sg-fallback", "-j DROP")
    table.add_rule("inst-1", "-j $sg-fallback")
    table.add_rule("local", "-d 10.0.0.2/32 -j $inst-1")
    table.add_rule("local", "-d 10.0.0.3/32 -j $inst-10")
    assert "-A nova-compute-local -d 10.0.0.2/32 -j nova-compute-inst-1" in [str(r) for r in table.rules]
    table.add_rule("local", "-d 10.0.0.2/32 -j $inst-1")  # again: moves to the end, no duplicate
    assert [str(r) for r in table.rules if r.chain == "local"] == [
        "-A nova-compute-local -d 10.0.0.3/32 -j nova-compute-inst-10",
        "-A nova-compute-local -d 10.0.0.2/32 -j nova-compute-inst-1"]
    table.remove_chain("inst-1")  # cascades to the jump, not to inst-10's
    assert [str(r) for r in table.rules if r.chain in ("local", "inst-1")] == [
        "-A nova-compute-local -d 10.0.0.3/32 -j nova-compute-inst-10"]
    table.remove_rule("local", "-d 10.0.0.3/32 -j $inst-10")
    table.empty_chain("sg-fallback")
    assert not [r for r in table.rules if r.chain in ("local", "sg-fallback")]
    table.remove_chain("inst-404")  # only logged


def test_apply_holds_the_shared_file_lock(tmp_path: Path) -> None:
    """While one binary applies, another cannot: both take <lock_path>/nova-iptables.lock."""
    lock_file = tmp_path / "lock" / "nova-iptables.lock"
    kernel = FakeIptables()
    seen: list[bool] = []

    def execute(argv: list[str], stdin: str | None) -> str:
        fd = os.open(lock_file, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append(False)
        except BlockingIOError:
            seen.append(True)
        finally:
            os.close(fd)
        return kernel.execute(argv, stdin)

    iptables.IptablesManager("nova-network", execute=execute, lock_path=str(tmp_path / "lock")).apply()
    assert seen and all(seen)
    # Threads of one binary wait for each other too.
    manager = iptables.IptablesManager("nova-network", execute=kernel.execute, lock_path=str(tmp_path / "lock"))
    threads = [threading.Thread(target=manager.apply) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)


def test_real_manager_is_installed_per_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(linux_net, "iptables_manager", linux_net.iptables_manager)
    monkeypatch.setattr(sys, "argv", ["/usr/bin/nova-network"])
    conf = flags.parse(f"--lock_path={tmp_path}\n--my_ip=192.168.56.200\n--host=controller-1\n")
    manager = linux_net.setup_iptables(conf)
    assert linux_net.iptables_manager is manager
    assert (manager.binary, manager.lock_path) == ("nova-network", str(tmp_path))


def test_canonical_form() -> None:
    """The stand-in's canonical form, on the rule shapes nova writes (checked for real in netns)."""
    assert canonical("--in-interface br100 -j ACCEPT") == "-i br100 -j ACCEPT"
    assert canonical("-s 0.0.0.0/0 -d 192.168.56.200 -p tcp -m tcp --dport 8775 -j ACCEPT") == (
        "-d 192.168.56.200/32 -p tcp -m tcp --dport 8775 -j ACCEPT")
    assert canonical("-m state --state ESTABLISHED,RELATED -j ACCEPT") == (
        "-m state --state RELATED,ESTABLISHED -j ACCEPT")
    assert canonical("-s 10.0.0.1 -p udp --sport 67 --dport 68 -j ACCEPT") == (
        "-s 10.0.0.1/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT")
