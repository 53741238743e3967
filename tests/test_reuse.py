"""--reuse decisions: which kept testbed, refusal lines, as-found comparison, before-any-guest (no nodes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flatbed.reuse import Footprint, ReuseRefused, changes, choose, not_before_any_guest, refusal
from flatbed.state import TestbedState
from flatbed.topology import DEFAULT_TOPOLOGY, load

ALT = Path(__file__).resolve().parent.parent / "topologies" / "alt.toml"
IMAGES = {"base": "b" * 64, "guest": "g" * 64}


@pytest.fixture(scope="module")
def topo():
    return load(DEFAULT_TOPOLOGY)


def kept(topo, run_id="fb000001", status="up", images=None, digest=None) -> TestbedState:
    return TestbedState(run_id=run_id, provider="nspawn", topology_path=str(topo.path),
                        topology_digest=digest or topo.digest, images=dict(images or IMAGES), status=status)


def test_a_fitting_testbed_is_not_refused(topo):
    assert refusal(kept(topo), topo, IMAGES) is None


def test_another_topology_is_refused_in_one_line(topo):
    alt = load(ALT)
    line = refusal(kept(alt), topo, IMAGES)
    assert line.startswith("testbed fb000001 was built from another topology (")
    assert str(ALT) in line and str(topo.path) in line and alt.digest[:12] in line
    assert "\n" not in line


@pytest.mark.parametrize("kind", ["base", "guest"])
def test_another_image_is_refused_in_one_line(topo, kind):
    line = refusal(kept(topo, images={**IMAGES, kind: "0" * 64}), topo, IMAGES)
    assert line == (f"testbed fb000001 was built from another {kind} image ({'0' * 16}) than this run would "
                    f"boot ({IMAGES[kind][:16]}); run without --reuse to bring one up")


def test_a_testbed_not_up_is_refused(topo):
    assert "is creating, not up" in refusal(kept(topo, status="creating"), topo, IMAGES)


def test_choose_by_run_id_only_or_fitting(topo):
    a, b = kept(topo, "fb00000a"), kept(topo, "fb00000b", images={"base": "x", "guest": "y"})
    assert choose([a, b], "fb00000b", topo, IMAGES) is b      # named: chosen, refused later if unfit
    assert choose([a], None, topo, IMAGES) is a
    assert choose([a, b], None, topo, IMAGES) is a            # the only one that fits
    assert choose([kept(topo, "fb00000c", status="failed"), b], None, topo, IMAGES) is b  # the only one up


def test_choose_refuses_when_none_or_ambiguous(topo):
    with pytest.raises(ReuseRefused, match="no kept testbed"):
        choose([], None, topo, IMAGES)
    with pytest.raises(ReuseRefused, match="no testbed fb0000ff"):
        choose([kept(topo)], "fb0000ff", topo, IMAGES)
    with pytest.raises(ReuseRefused, match=r"--reuse=e2e/: not a run id"):   # `pytest --reuse e2e/`
        choose([kept(topo)], "e2e/", topo, IMAGES)
    with pytest.raises(ReuseRefused, match=r"choose one with --reuse=RUN_ID"):
        choose([kept(topo, "fb00000a"), kept(topo, "fb00000b")], None, topo, IMAGES)


def test_as_found():
    before = Footprint(guests=("mine",), addresses=("10.0.0.2",))
    assert changes(before, before) is None
    after = Footprint(guests=("mine", "cirros"), addresses=("10.0.0.2", "10.0.0.3"))
    assert changes(before, after) == "guests left: cirros; fixed IPs not back in the pool: 10.0.0.3"
    assert changes(before, Footprint((), ())) == "guests that were there before are gone: mine"


def test_before_any_guest():
    assert not_before_any_guest([], 0, []) is None
    assert "2 guest(s) were booted on it before" in not_before_any_guest([], 2, [])
    assert not_before_any_guest(["cirros"], 1, ["10.0.0.2"]).startswith("guests exist (cirros)")
    assert "fixed IPs in use (10.0.0.2)" in not_before_any_guest([], 0, ["10.0.0.2"])
