"""The container provider's teardown of what a killed nspawn leaves on disk (no containers started)."""

from __future__ import annotations

from flatbed import state
from flatbed.providers.nspawn import naming
from flatbed.providers.nspawn.provider import NspawnProvider
from flatbed.providers.nspawn.record import NspawnNodeRecord, NspawnRecord
from flatbed.topology import DEFAULT_TOPOLOGY, load


def test_destroy_removes_the_work_dirs_a_killed_nspawn_left(tmp_path, monkeypatch):
    monkeypatch.setenv("FLATBED_STATE", str(tmp_path))
    run = "fb0000ab"
    st = state.TestbedState(run_id=run, provider="nspawn", topology_path=str(DEFAULT_TOPOLOGY),
                            topology_digest="d", status="creating", owner="",
                            record=NspawnRecord(nodes={"compute-1": NspawnNodeRecord(
                                role="compute", netns=naming.netns(run, "compute-1"),
                                upper=str(naming.overlays(tmp_path / run) / "compute-1"))}))
    overlays = naming.overlays(st.dir)
    (overlays / "compute-1" / "etc").mkdir(parents=True)
    # nspawn's overlayfs work dir beside the upper: removed by nspawn only when it exits by itself.
    (overlays / ".#compute-1a1b2c3d4" / "work").mkdir(parents=True)
    provider = NspawnProvider(load(DEFAULT_TOPOLOGY), st, lambda message: None)
    assert provider.leftovers() == [f"overlay {overlays / '.#compute-1a1b2c3d4'}", f"overlay {overlays / 'compute-1'}"]
    removed = provider.destroy()
    assert f"overlay {overlays / '.#compute-1a1b2c3d4'}" in removed
    assert not overlays.exists()
    assert provider.leftovers() == []
