"""The host isolation audit's judgement (no nodes): changes, who they belong to, what is accounted for."""

from __future__ import annotations

from flatbed import hostaudit
from flatbed.hostaudit import HostView, changes, judge


def test_changes_are_what_appeared_and_what_went():
    before = HostView(frozenset({"link eth0", "route default via 192.0.2.1 dev eth0"}))
    after = HostView(frozenset({"link eth0", "link fb1a2b3c-m", "iptables filter: -A FORWARD -j DROP"}))
    assert changes(before, after) == ["+ iptables filter: -A FORWARD -j DROP", "+ link fb1a2b3c-m",
                                      "- route default via 192.0.2.1 dev eth0"]


def test_judge_tells_leaks_from_what_is_accounted_for():
    ours = {"fb1a2b3c"}
    assert judge("+ link fb1a2b3c-m", ours, set()) is None                        # ours, nothing kept: a leak
    assert judge("+ iptables filter: -A FORWARD -j DROP", ours, set()) is None    # untagged: a leak
    assert "not this session's" in judge("+ link fb9999ff-m", ours, set())
    assert "uses the host's libvirt" in judge("+ link fb1a2b3c-m", ours, {"fb1a2b3c"})
    assert "libvirt's own chains" in judge("+ iptables filter: :LIBVIRT_FWI - [0:0]", ours, {"fb1a2b3c"})
    assert judge("+ iptables filter: :LIBVIRT_FWI - [0:0]", ours, set()) is None


def test_keys_left_by_removed_testbeds_only(tmp_path):
    for run, kept in (("fb00000a", True), ("fb00000b", False)):
        (tmp_path / run / "ssh").mkdir(parents=True)
        (tmp_path / run / "ssh" / "id_ed25519").write_text("key")
        if kept:
            (tmp_path / run / "state.json").write_text("{}")
    (tmp_path / "fb00000c" / "logs").mkdir(parents=True)
    assert hostaudit.keys_left(tmp_path) == [str(tmp_path / "fb00000b" / "ssh" / "id_ed25519")]


def test_a_view_of_this_host_has_its_links_and_routes():
    view = hostaudit.look()
    assert "link lo" in view.items
    assert any(item.startswith("address 127.0.0.1/8 on lo") for item in view.items)
