"""Image builds under concurrency (pytest -n: every worker asks for the images at once): two
processes building the same image make one image; the second waits for the first, says so, and
takes the first one's result."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from flatbed.images import cache

DIGEST = "cd" * 32
BUILD_SECONDS = 1.5


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLATBED_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _build(log: str, name: str, started: multiprocessing.synchronize.Event | None) -> None:
    said: list[str] = []

    def builder(tmp: Path) -> None:
        with open(log, "a") as fh:
            fh.write(json.dumps({"who": name, "event": "build-start", "t": time.monotonic()}) + "\n")
        if started is not None:
            started.set()
        (tmp / "image").write_text(name)
        time.sleep(BUILD_SECONDS)  # a build that takes a while: the other process must wait, not build

    path, cached = cache.build_cached("base", DIGEST, builder, said.append)
    with open(log, "a") as fh:
        fh.write(json.dumps({"who": name, "event": "done", "t": time.monotonic(), "cached": cached,
                             "path": str(path), "said": said}) + "\n")


def test_two_concurrent_builds_make_one_image_and_the_second_waits(tmp_path: Path) -> None:
    log = str(tmp_path / "log.jsonl")
    ctx = multiprocessing.get_context("fork")
    started = ctx.Event()
    first = ctx.Process(target=_build, args=(log, "first", started))
    first.start()
    assert started.wait(30), "the first build did not start"
    second = ctx.Process(target=_build, args=(log, "second", None))  # starts while the first builds
    second.start()
    first.join(60)
    second.join(60)
    assert first.exitcode == second.exitcode == 0
    events = [json.loads(line) for line in Path(log).read_text().splitlines()]
    builds = [e for e in events if e["event"] == "build-start"]
    done = {e["who"]: e for e in events if e["event"] == "done"}
    assert [b["who"] for b in builds] == ["first"], "only one process built the image"
    assert done["first"]["cached"] is False and done["second"]["cached"] is True
    assert done["first"]["path"] == done["second"]["path"]
    assert Path(done["second"]["path"], "image").read_text() == "first"
    # the second returned only after the first had finished, and said why it waited
    assert done["second"]["t"] >= builds[0]["t"] + BUILD_SECONDS
    assert any("waiting for another process's build" in line for line in done["second"]["said"])
    images = [i for i in cache.list_images() if i.kind == "base"]
    assert len(images) == 1 and images[0].complete
    assert not list(cache.cache_dir().glob(".base-build-*")), "no temporary build directory is left"
