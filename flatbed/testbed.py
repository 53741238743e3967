"""A testbed: one topology brought up by one provider, provisioned, recorded in a state file.

>>> bed = Testbed.up(topology.load(path), "nspawn")
>>> bed.node("controller-1").check("brctl show")
>>> bed.down()
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from flatbed import ownership, providers, provisioning, state, timings
from flatbed.errors import FlatbedError, UsageError
from flatbed.images.base import BaseImage, ensure_base
from flatbed.images.guest import GuestImage, check_disk_image, ensure_guest
from flatbed.node import Node
from flatbed.providers.base import Provider
from flatbed.topology import Topology
from flatbed.topology import load as load_topology
from flatbed.uninterruptible import finishing_teardown


def default_progress(message: str) -> None:
    print(f"[flatbed] {message}", file=sys.stderr, flush=True)


class Testbed:
    """A live (or half-built) testbed, whichever process created it."""

    __test__ = False

    def __init__(self, topo: Topology, st: state.TestbedState, provider: Provider,
                 progress: Callable[[str], None]):
        self.topology = topo
        self.state = st
        self.provider = provider
        self.progress = progress
        # Brought up by this process: its whole history happened here (the guest client's ledger
        # then starts empty instead of reading the past from the stack).
        self.created_here = False
        self.removing = False

    @property
    def run_id(self) -> str:
        return self.state.run_id

    @property
    def dir(self) -> Path:
        return self.state.dir

    @classmethod
    @timings.timed("bring-up", lambda cls, topo, provider_name="auto", **_: f"{topo.name} on {provider_name}")
    def up(cls, topo: Topology, provider_name: str = "auto", *, mirror: str | None = None,
           cirros_image: Path | None = None, cirros_password: str | None = None, keep_on_failure: bool = False,
           progress: Callable[[str], None] = default_progress,
           provider_options: dict | None = None) -> Testbed:
        """Build (or reuse) the images, choose the provider, boot the nodes and provision them.

        On failure or interruption everything created so far is removed (logs stay in the
        testbed directory), unless ``keep_on_failure``; the state file records what exists at
        every step, so a killed run can be cleaned up too. ``provider_options`` (e.g. the vagrant
        provider's ``libvirt_uri``) are kept in the state file for later processes.
        """
        named = None if provider_name == "auto" else providers.get(provider_name)
        why = named.unusable() if named else None
        if named and why:
            raise FlatbedError(f"provider {named.name} cannot run here: {why}")
        options = {k: v for k, v in (provider_options or {}).items() if v is not None}
        # Bad input is refused before anything is built or created.
        if cirros_image is not None:
            check_disk_image(cirros_image)
        why = named.bad_options(options) if named else None
        if why:
            raise UsageError(why)
        # Images before `auto` chooses (each is built once and cached): choosing never builds one.
        base = ensure_base(mirror=mirror, progress=_tagged(progress, "images"))
        guest = ensure_guest(progress=_tagged(progress, "images"), cirros_image=cirros_image,
                             cirros_password=cirros_password)
        provider_cls = named or providers.auto(guest, progress)
        why = None if named else provider_cls.bad_options(options)
        if why:
            raise UsageError(why)
        st = state.TestbedState(run_id=state.new_run_id(), provider=provider_cls.name,
                                topology_path=str(topo.path), topology_digest=topo.digest,
                                images={"base": base.hash, "guest": guest.hash},
                                options=options,
                                record=provider_cls.Record())
        bed = cls(topo, st, provider_cls(topo, st, progress), progress)
        bed.created_here = True
        bed.provider.build_images(base, guest)  # the provider's own (the VM box), before anything exists
        progress(f"testbed {st.run_id}: {topo.name} on {provider_cls.name} (state in {st.dir})")
        try:
            bed.create(base, guest)
        except BaseException as e:
            st.status = "failed"
            st.save()
            if keep_on_failure:
                progress(f"testbed {st.run_id} failed ({type(e).__name__}); kept for inspection")
            else:
                progress(f"testbed {st.run_id} failed ({type(e).__name__}); removing it, logs stay in {st.dir}")
                bed.down()
            raise
        return bed

    def create(self, base: BaseImage, guest: GuestImage) -> None:
        started = time.monotonic()
        self.state.save()
        self.provider.create(base)
        # Only the controller's store gets the image; computes fetch it from nova-api on first use.
        provisioning.provision_nodes(self.node, self.topology, self.progress,
                                     alongside=lambda: provisioning.push_guest_image(self.controller, guest))
        self.state.status = "up"
        self.state.save()
        self.progress(f"testbed {self.run_id} up in {time.monotonic() - started:.1f} s")

    @classmethod
    def attach(cls, run_id: str | None = None, progress: Callable[[str], None] = default_progress, *,
               unless_in_use: str | None = None, force: bool = False) -> Testbed:
        """The testbed another process created (the only one, or ``run_id``).

        For a verb that changes or removes it, ``unless_in_use`` is the refusal's hint: a testbed
        someone else uses is refused in one line (without ``run_id``, only unused ones are
        chosen from), unless ``force``.
        """
        if unless_in_use is None or force:
            st = state.find(run_id)
        else:
            st = state.find(run_id, lambda beds: ownership.choose_unused(beds, hint=unless_in_use))
            ownership.refuse_if_in_use(st, hint=unless_in_use)
        topo = load_topology(st.topology_path)
        if topo.digest != st.topology_digest:
            raise FlatbedError(f"testbed {st.run_id}: its topology file {st.topology_path} changed since it was built")
        return cls(topo, st, providers.get(st.provider)(topo, st, progress), progress)

    def node(self, name: str) -> Node:
        return self.provider.node(name)

    @property
    def controller(self) -> Node:
        return self.node(self.topology.controller.name)

    def computes(self) -> list[Node]:
        return [self.node(n.name) for n in self.topology.computes]

    def give_back(self) -> None:
        """Keep the testbed without a user (the run that used it is done with it)."""
        ownership.give_back(self.state)

    def taken_away(self) -> bool:
        """Whether someone else removed (or is removing) this testbed while this process used it."""
        return not self.removing and ownership.taken_away(self.state)

    @timings.timed("teardown", lambda self: self.run_id)
    def down(self) -> list[str]:
        """Remove everything of this testbed; raise if anything is left behind.

        Once started, an interrupt cannot cut it (:mod:`flatbed.uninterruptible`); the state file
        says ``removing`` (by this process) until everything is gone, so ``flatbed clean`` knows a
        removal that was aborted.
        """
        started = time.monotonic()
        self.removing = True   # by this process: not taken away from it
        with finishing_teardown(self.run_id):
            self.state.status = "removing"
            self.state.owner, self.state.owner_since = ownership.me(), time.time()
            self.state.save()
            removed = self.provider.destroy()
            left = self.provider.leftovers()
            if left:
                raise FlatbedError(f"testbed {self.run_id}: left behind after destroy: {', '.join(left)}")
            self.state.forget()
        state.prune_artifacts()
        self.progress(f"testbed {self.run_id} removed ({len(removed)} resources) in "
                      f"{time.monotonic() - started:.1f} s")
        return removed


def _tagged(progress: Callable[[str], None], tag: str) -> Callable[[str], None]:
    return lambda message: progress(f"{tag}: {message}")
