"""Reusing a kept testbed (``pytest --reuse``): which one, whether it fits, whether it is healthy,
and whether the tests left it as they found it.

A kept testbed fits a run when it was built from the same topology (its digest) and the same
images (their input hashes, computed here without building anything); otherwise the run is
refused with one line, and so is one that another live run uses (:mod:`flatbed.ownership`). A
fitting one must pass the health check (:mod:`flatbed.health`); the run then uses it (its state
file names the run) until the run ends.
Its *footprint* (guests, fixed IPs in use) is taken before the run and compared after it.
The decisions are pure functions, unit-tested.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flatbed import health, ownership, state
from flatbed.cloud import Cloud
from flatbed.errors import FlatbedError
from flatbed.testbed import Testbed, default_progress
from flatbed.topology import Topology


class ReuseRefused(FlatbedError):
    """The kept testbed cannot serve this run; the message says why and what to do."""


IN_USE_HINT = "wait for that run to end, or bring one up without --reuse"


def expected_images(mirror: str | None = None, cirros_image: Path | None = None) -> dict[str, str]:
    """The input hashes of the images this run would boot (as ``ensure_base``/``ensure_guest``
    compute them), without building anything."""
    from flatbed.images import apt, base, guest
    from flatbed.images.hashing import hash_file, hash_tree

    mirror = apt.detect_mirror(mirror)
    base_digest = base.base_hash(apt.resolve_suite_versions(base.PACKAGES, base.SUITE, mirror), mirror)
    if cirros_image is not None:
        guest_digest = hash_file(guest.check_disk_image(cirros_image))
    else:
        guest_digest = guest.guest_hash(guest.resolve_packages(), guest.host_sources_key(),
                                        hash_tree(guest.GUEST_SRC))
    return {"base": base_digest, "guest": guest_digest}


def refusal(st: state.TestbedState, topology: Topology, images: dict[str, str]) -> str | None:
    """Why the kept testbed ``st`` cannot serve a run of ``topology`` with ``images``, or None."""
    if st.status != "up":
        return (f"testbed {st.run_id} is {st.status}, not up: it cannot be reused "
                f"(`flatbed --testbed {st.run_id} down` removes it)")
    if st.topology_digest != topology.digest:
        return (f"testbed {st.run_id} was built from another topology ({st.topology_path}, digest "
                f"{st.topology_digest[:12]}) than this run's {topology.path} (digest {topology.digest[:12]}); "
                f"run without --reuse to bring one up")
    for kind in ("base", "guest"):
        built, wanted = st.images.get(kind, ""), images.get(kind, "")
        if built != wanted:
            return (f"testbed {st.run_id} was built from another {kind} image ({built[:16] or 'unknown'}) than "
                    f"this run would boot ({wanted[:16]}); run without --reuse to bring one up")
    return None


def choose(beds: Sequence[state.TestbedState], run_id: str | None, topology: Topology,
           images: dict[str, str]) -> state.TestbedState:
    """The kept testbed to reuse: ``run_id``, else the only one up, else the only one that fits."""
    if run_id and not re.fullmatch(rf"{state.RUN_PREFIX}[0-9a-f]{{6}}", run_id):
        raise ReuseRefused(f"--reuse={run_id}: not a run id ({state.RUN_PREFIX} + 6 hex digits); "
                           f"write `pytest e2e/ --reuse` or `--reuse=RUN_ID`")
    if run_id:
        for st in beds:
            if st.run_id == run_id:
                return st
        raise ReuseRefused(f"--reuse: no testbed {run_id} in {state.state_root()} "
                           f"(testbeds: {', '.join(b.run_id for b in beds) or 'none'})")
    up = [st for st in beds if st.status == "up"]
    if not up:
        raise ReuseRefused(f"--reuse: no kept testbed in {state.state_root()} (keep one with "
                           f"--destroy=passing or never, or start one with `flatbed up`)")
    free = [st for st in up if ownership.user_of(st) is None]  # only among testbeds nobody uses
    if not free:
        ownership.choose_unused(up, hint=IN_USE_HINT)  # raises, naming who uses them
    up = free
    if len(up) == 1:
        return up[0]
    fitting = [st for st in up if refusal(st, topology, images) is None]
    if len(fitting) == 1:
        return fitting[0]
    raise ReuseRefused(f"--reuse: {len(fitting) or len(up)} kept testbeds could serve this run "
                       f"({', '.join(st.run_id for st in (fitting or up))}); choose one with --reuse=RUN_ID")


def attach(run_id: str | None, topology: Topology, *, mirror: str | None = None, cirros_image: Path | None = None,
           progress: Callable[[str], None] = default_progress) -> Testbed:
    """Attach to a kept testbed that fits this run and is healthy, or raise ReuseRefused."""
    images = expected_images(mirror, cirros_image)
    st = choose(state.list_testbeds(), run_id, topology, images)
    why = refusal(st, topology, images)
    if why:
        raise ReuseRefused(why)
    ownership.refuse_if_in_use(st, hint=IN_USE_HINT)
    bed = Testbed.attach(st.run_id, progress)
    problem = health.verdict(health.check(bed))
    if problem:
        raise ReuseRefused(f"testbed {st.run_id} is not healthy, not reusing it: {problem}")
    ownership.take(bed.state, hint=IN_USE_HINT)  # given back at the run's end (or removed by it)
    progress(f"reusing testbed {st.run_id} ({topology.name}, {st.provider}): healthy")
    return bed


# --- as found ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Footprint:
    """What tests could leave behind on a testbed: guests and fixed IPs not back in the pool."""

    guests: tuple[str, ...]
    addresses: tuple[str, ...]


def footprint(testbed: Testbed) -> Footprint:
    """Guests and fixed IPs in use; the latter only where deleting returns them at once
    (force_dhcp_release), since otherwise they come back only when their lease expires."""
    cloud = Cloud(testbed)
    return Footprint(guests=tuple(sorted(s["Name"] for s in cloud.servers())),
                     addresses=tuple(sorted(cloud.used_addresses())) if cloud.releases_on_delete else ())


def changes(before: Footprint, after: Footprint) -> str | None:
    """None when ``after`` is as ``before``; else one line naming what was left behind."""
    parts = []
    extra_guests = sorted(set(after.guests) - set(before.guests))
    extra_addresses = sorted(set(after.addresses) - set(before.addresses))
    if extra_guests:
        parts.append(f"guests left: {', '.join(extra_guests)}")
    if extra_addresses:
        parts.append(f"fixed IPs not back in the pool: {', '.join(extra_addresses)}")
    gone = sorted(set(before.guests) - set(after.guests))
    if gone:
        parts.append(f"guests that were there before are gone: {', '.join(gone)}")
    return "; ".join(parts) or None


def history(testbed: Testbed) -> str | None:
    """Why ``testbed`` is past its before-any-guest state (the document's starting point), or None."""
    cloud = Cloud(testbed)
    return not_before_any_guest([s["Name"] for s in cloud.servers()], cloud.instances_ever(), cloud.used_addresses())


def not_before_any_guest(servers: Iterable[str], instances_ever: int, used_addresses: Iterable[str]) -> str | None:
    """Why a testbed is not in its before-any-guest state (the document's starting point), or None."""
    servers, used = list(servers), list(used_addresses)
    reasons = []
    if servers:
        reasons.append(f"guests exist ({', '.join(servers)})")
    if instances_ever:
        reasons.append(f"{instances_ever} guest(s) were booted on it before, so instance ids and leases have "
                       f"moved on")
    if used and not servers:
        reasons.append(f"fixed IPs in use ({', '.join(used)})")
    return "; ".join(reasons) or None
