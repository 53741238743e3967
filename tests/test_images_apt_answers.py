"""apt-cache's answers are remembered per apt state: asked once, asked again when apt's files change."""

from __future__ import annotations

import os
import subprocess

import pytest

from flatbed.images import apt


@pytest.fixture
def asked(tmp_path, monkeypatch) -> list[list[str]]:
    """apt-cache replaced by a recorder (answers name the call), the cache and apt's files in tmp_path."""
    calls: list[list[str]] = []
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages").write_text("Package: a\n")
    monkeypatch.setenv("FLATBED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(apt, "APT_STATE", (lists, tmp_path / "status"))
    monkeypatch.setattr(apt, "ensure_lists", lambda: None)

    def fake_run(argv, **_):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout=f"answer {len(calls)}\n")

    monkeypatch.setattr(apt.subprocess, "run", fake_run)
    return calls


def test_the_same_question_is_asked_once(asked) -> None:
    assert apt.apt_cache(["policy", "systemd"]) == "answer 1\n"
    assert apt.apt_cache(["policy", "systemd"]) == "answer 1\n"
    assert apt.apt_cache(["policy", "dbus"]) == "answer 2\n"
    assert asked == [["apt-cache", "policy", "systemd"], ["apt-cache", "policy", "dbus"]]


def test_a_changed_list_or_a_new_file_asks_again(asked, tmp_path) -> None:
    apt.apt_cache(["policy", "systemd"])
    packages = next((tmp_path / "lists").iterdir())
    packages.write_text("Package: a\nVersion: 2\n")                      # apt-get update
    assert apt.apt_cache(["policy", "systemd"]) == "answer 2\n"
    (tmp_path / "status").write_text("Package: systemd\n")               # dpkg installed something
    assert apt.apt_cache(["policy", "systemd"]) == "answer 3\n"
    os.utime(packages, ns=(1, 1))                                         # same size, other mtime
    assert apt.apt_cache(["policy", "systemd"]) == "answer 4\n"
    assert len(asked) == 4
