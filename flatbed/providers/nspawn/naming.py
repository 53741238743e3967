"""Every name the container provider creates, derived from the run id so that cleanup finds it."""

from __future__ import annotations

from pathlib import Path

CGROUP_PARENT = "flatbed"  # shared by testbeds: removed only with the last one
BRIDGES = {"management": "mgmt", "flat": "flat"}  # in the switch namespace


def switch(run: str) -> str:
    return f"{run}-sw"


def netns(run: str, node: str) -> str:
    return f"{run}-{node}"


def machine(run: str, node: str) -> str:
    return f"{run}-{node}"


def cgroup(run: str, node: str) -> str:
    return f"{CGROUP_PARENT}/{run}-{node}"


def overlays(testbed_dir: Path) -> Path:
    """The parent of the containers' overlay upper dirs."""
    return testbed_dir / "nodes"
