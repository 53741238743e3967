"""Unit tests' use of the toy provider: a toy testbed made as ``Testbed.up`` makes one (without
images and provisioning), and ``flatbed`` run in-process. The ``toy`` fixture that registers the
provider is in tests/conftest.py."""

from __future__ import annotations

from flatbed import cli, providers, state
from flatbed.topology import DEFAULT_TOPOLOGY
from flatbed.topology import load as load_topology


def toy_testbed(status: str = "up", owner: str | None = None) -> state.TestbedState:
    """A toy testbed with ``status``; ``owner``: the process using it ("" none; None: this process,
    as a new state file records its creator)."""
    cls = providers.get("toy")
    topo = load_topology(DEFAULT_TOPOLOGY)
    st = state.TestbedState(run_id=state.new_run_id(), provider="toy", topology_path=str(topo.path),
                            topology_digest=topo.digest, record=cls.Record())
    cls(topo, st, lambda _m: None).create(None)
    st.status = status
    if owner is not None:
        st.owner = owner
    st.save()
    return st


def flatbed(capsys, *argv: str) -> tuple[int, str]:
    """``flatbed ARGV`` in this process: its exit code and what it printed (stdout and stderr)."""
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out + out.err
