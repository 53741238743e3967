"""flatbed/checks/identity.py and the guest client's ledger: each identifier's rule, fed right and wrong values."""

from __future__ import annotations

from pathlib import Path

import pytest

from flatbed.checks import identity
from flatbed.checks.identity import Identity
from flatbed.cloud import BootLedger, Derived, Guest
from flatbed.topology import DEFAULT_TOPOLOGY, Topology
from flatbed.topology import load as load_topology

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def topo() -> Topology:
    return load_topology(DEFAULT_TOPOLOGY)


@pytest.fixture
def alt() -> Topology:
    return load_topology(REPO / "topologies" / "alt.toml")


# --- the id and its names -----------------------------------------------------------------------

def test_ids_follow_the_boot_order_from_first_instance_id(topo: Topology, alt: Topology) -> None:
    assert [identity.expected_id(topo, n) for n in range(3)] == [9, 10, 11]
    assert identity.expected_id(alt, 0) == 1


def test_names_of_an_id_are_hex_hex_decimal() -> None:
    names = Identity(10)
    assert (names.instance_name, names.ec2_id, names.chain) == ("instance-0000000a", "i-0000000a",
                                                                "nova-compute-inst-10")


def test_names_that_agree_with_the_id_pass() -> None:
    seen = {"domain": "instance-0000000a", "console iid": "i-0000000a", "chain": "nova-compute-inst-10"}
    assert identity.name_problems(Identity(10), seen) == []


@pytest.mark.parametrize(("where", "wrong"), [
    ("domain", "instance-00000010"),          # the decimal id printed as if hex
    ("domain", "instance-0000000b"),          # the next id
    ("console iid", "i-00000009"),            # the previous guest's
    ("console iid", "i-10"),                  # not zero-padded
    ("chain", "nova-compute-inst-a"),         # hex in the chain
    ("chain", "nova-compute-inst-11"),
    ("nwfilter", "vm-0000000a"),              # no rule of that shape
])
def test_each_name_rule_fails_on_a_wrong_name(where: str, wrong: str) -> None:
    [problem] = identity.name_problems(Identity(10), {where: wrong})
    assert problem.startswith(f"{where}: {wrong!r}")


# --- MACs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mac", ["fa:16:3e:2c:e8:ec", "fa:16:3e:00:00:00", "fa:16:3e:7f:ff:ff"])
def test_essex_macs_pass(mac: str) -> None:
    assert identity.mac_problem(mac) is None


@pytest.mark.parametrize("mac", [
    "fa:16:3e:80:00:01",   # 4th octet above 7f
    "fa:16:3f:2c:e8:ec",   # another prefix
    "fe:16:3e:2c:e8:ec",   # the tap's
    "52:54:00:2c:e8:ec",   # libvirt's own prefix
    "FA:16:3E:2C:E8:EC",   # nova prints lower case
    "fa:16:3e:2c:e8",      # short
    None,
])
def test_a_mac_outside_essexs_rule_fails(mac: str | None) -> None:
    assert identity.mac_problem(mac)


def test_the_tap_shows_the_guest_mac_with_fe() -> None:
    assert identity.tap_mac("fa:16:3e:2c:e8:ec") == "fe:16:3e:2c:e8:ec"
    assert identity.tap_problem("fa:16:3e:2c:e8:ec", "fe:16:3e:2c:e8:ec") is None
    for wrong in ("fa:16:3e:2c:e8:ec", "fe:16:3e:2c:e8:ed", None):
        assert identity.tap_problem("fa:16:3e:2c:e8:ec", wrong)


# --- the lowest free address --------------------------------------------------------------------

def test_the_first_guest_gets_network_plus_two(topo: Topology, alt: Topology) -> None:
    assert identity.lowest_free(topo, []) == ("10.0.0.2",)
    assert identity.lowest_free(alt, []) == ("10.42.8.2",)


def test_the_lowest_free_fills_holes_first(topo: Topology) -> None:
    assert identity.lowest_free(topo, ["10.0.0.2", "10.0.0.4"]) == ("10.0.0.3",)
    assert identity.address_problem(("10.0.0.3",), "10.0.0.5")
    assert identity.address_problem(("10.0.0.3",), None)


def test_addresses_that_may_be_back_are_candidates_below_the_lowest_free(topo: Topology) -> None:
    # .3 was never leased before its guest went: it comes back only after the disassociate timeout.
    candidates = identity.lowest_free(topo, ["10.0.0.2"], maybe_held=["10.0.0.3", "10.0.0.9"])
    assert candidates == ("10.0.0.3", "10.0.0.4")
    assert identity.address_problem(candidates, "10.0.0.4") is None
    assert identity.address_problem(candidates, "10.0.0.9")  # above the lowest free one


def test_the_range_ends_before_the_broadcast(topo: Topology) -> None:
    range_ = identity.flat_range(topo)
    assert (str(range_[0]), str(range_[-1]), len(range_)) == ("10.0.0.2", "10.0.0.254", 253)
    assert identity.lowest_free(topo, [str(a) for a in range_]) == ()


# --- the ledger the guest client keeps ------------------------------------------------------------

def test_the_ledger_derives_ids_and_addresses_from_what_the_client_did(topo: Topology) -> None:
    ledger = BootLedger()
    first = ledger.next(topo)
    assert first == Derived(9, ("10.0.0.2",))
    ledger.record_created("a", first)
    ledger.record_address("a", "10.0.0.2")
    second = ledger.next(topo)
    assert second == Derived(10, ("10.0.0.3",))
    ledger.record_created("b", second)
    ledger.record_address("b", "10.0.0.3")
    ledger.record_deleted("b", "10.0.0.3", released=True)   # leased, then released on delete
    assert ledger.next(topo) == Derived(11, ("10.0.0.3",))


def test_a_never_leased_address_may_come_back_later(topo: Topology) -> None:
    ledger = BootLedger()
    ledger.record_created("a", ledger.next(topo))
    ledger.record_address("a", "10.0.0.2")
    ledger.record_deleted("a", "10.0.0.2", released=False)
    assert ledger.next(topo) == Derived(10, ("10.0.0.2", "10.0.0.3"))
    ledger.record_created("b", ledger.next(topo))
    ledger.record_address("b", "10.0.0.2")                   # it was back: held again
    assert ledger.next(topo).addresses == ("10.0.0.3",)


def test_a_refused_boot_creates_nothing(topo: Topology) -> None:
    ledger = BootLedger(created=4, held={"10.0.0.2": "x"})
    ledger.next(topo)  # nova boot refused: nothing recorded
    assert ledger.next(topo) == Derived(13, ("10.0.0.3",))


# --- a guest record against all of them ------------------------------------------------------------

def guest(**fields) -> Guest:
    record = {"uuid": "u", "name": "cirros", "status": "ACTIVE", "instance_name": "instance-00000009",
              "ip": "10.0.0.2", "compute": "compute-1", "mac": "fa:16:3e:2c:e8:ec",
              "derived": Derived(9, ("10.0.0.2",))}
    return Guest(**{**record, **fields})


def test_a_guest_that_follows_the_rules_passes() -> None:
    good = guest()
    assert identity.guest_problems(good, {"console iid": "i-00000009", "chain": "nova-compute-inst-9"}) == []
    assert identity.rule_address(good) == "10.0.0.2"


@pytest.mark.parametrize(("fields", "seen", "says"), [
    ({"instance_name": "instance-0000000a"}, {}, "instance-00000009"),
    ({"mac": "fa:16:3e:ac:e8:ec"}, {}, "4th octet"),
    ({"ip": "10.0.0.3"}, {}, "lowest free address of the flat range is 10.0.0.2"),
    ({}, {"console iid": "i-0000000a"}, "console iid"),
])
def test_a_guest_breaking_one_rule_fails(fields: dict, seen: dict, says: str) -> None:
    with pytest.raises(AssertionError, match=says):
        identity.assert_follows_rules(guest(**fields), seen)


def test_a_guest_the_client_did_not_create_has_no_derived_identity() -> None:
    with pytest.raises(AssertionError, match="not created by this process"):
        identity.identity_of(guest(derived=None))


def test_a_failed_builds_address_may_stay_out_of_the_pool(topo: Topology) -> None:
    """ERROR hides the address (nova list shows none), yet Essex keeps a deallocated, never leased
    address associated until fixed_ip_disassociate_timeout: the next guest may get it or the next."""
    ledger = BootLedger()
    broken = ledger.next(topo)
    ledger.record_created("broken", broken)
    for address in broken.addresses:
        ledger.record_deleted("broken", address, released=False)
    assert ledger.next(topo) == Derived(10, ("10.0.0.2", "10.0.0.3"))


def test_an_address_skipped_by_one_guest_is_not_expected_for_the_next(topo: Topology) -> None:
    """One wrong allocation fails that guest's check; the next guests are derived from what happened."""
    ledger = BootLedger()
    first = ledger.next(topo)
    ledger.record_created("a", first)
    ledger.record_address("a", "10.0.0.3")      # the rule said .2
    assert identity.address_problem(first.addresses, "10.0.0.3")
    assert ledger.next(topo).addresses == ("10.0.0.2", "10.0.0.4")
