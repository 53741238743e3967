"""The toy provider: a directory per node, named after the run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from flatbed import state
from flatbed.errors import FlatbedError, NodeGoneError
from flatbed.images.base import BaseImage
from flatbed.node import Node
from flatbed.providers.base import Provider
from toyprovider.record import ToyNodeRecord, ToyRecord


def host() -> Path:
    return Path(os.environ["FLATBED_TOY_ROOT"])


class ToyNode(Node):
    def _exec(self, argv: list[str], stdin: bytes | None, timeout: float) -> tuple[int, bytes, bytes]:
        raise NodeGoneError(f"{self.name}: toy nodes run nothing")


class ToyProvider(Provider):
    name = "toy"
    Record = ToyRecord

    @classmethod
    def unusable(cls) -> str | None:
        return None if os.environ.get("FLATBED_TOY_ROOT") else "FLATBED_TOY_ROOT is not set"

    @property
    def rec(self) -> ToyRecord:
        assert isinstance(self.state.record, ToyRecord)
        return self.state.record

    def create(self, base: BaseImage | None) -> None:
        for node in self.topology.nodes:
            machine = host() / f"{self.state.run_id}-{node.name}"
            self.rec.nodes[node.name] = ToyNodeRecord(role=node.role, machine=str(machine))
        self.state.save()  # named before made
        for record in self.rec.nodes.values():
            Path(record.machine).mkdir(parents=True)
            (Path(record.machine) / "role").write_text(record.role)

    def node(self, name: str) -> Node:
        record = self.rec.nodes.get(name)
        if record is None:
            raise FlatbedError(f"no node {name!r} in testbed {self.state.run_id}")
        if not Path(record.machine).is_dir():
            raise NodeGoneError(f"{name}: toy machine {record.machine} is gone")
        return ToyNode(name, record.role)

    def destroy(self) -> list[str]:
        removed = []
        for record in self.rec.nodes.values():
            if Path(record.machine).exists():
                shutil.rmtree(record.machine)
                removed.append(f"toy machine {record.machine}")
        return removed

    def leftovers(self) -> list[str]:
        return [f"toy machine {r.machine}" for r in self.rec.nodes.values() if Path(r.machine).exists()]

    def facts(self) -> list[str]:
        return [f"{len(self.rec.nodes)} toy machines under {host()}"]

    @classmethod
    def scan(cls) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for machine in sorted(host().iterdir()) if host().is_dir() else []:
            run = state.run_of(machine.name)
            if run:
                found.setdefault(run, []).append(f"toy machine {machine}")
        return found

    @classmethod
    def sweep(cls, run_id: str) -> list[str]:
        removed = []
        for machine in sorted(host().glob(f"{run_id}-*")):
            shutil.rmtree(machine)
            removed.append(f"toy machine {machine}")
        return removed
