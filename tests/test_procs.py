"""Host processes: children of a process, whichever thread started them (no nodes)."""

from __future__ import annotations

import os
import subprocess
import threading

from flatbed import procs


def test_children_started_by_any_thread():
    started: list[subprocess.Popen] = []
    thread = threading.Thread(target=lambda: started.append(subprocess.Popen(["sleep", "5"])))
    thread.start()
    thread.join()
    main = subprocess.Popen(["sleep", "5"])
    try:
        assert {main.pid, started[0].pid} <= set(procs.children(os.getpid()))
    finally:
        for proc in (main, *started):
            proc.kill()
            proc.wait()


def test_a_process_that_is_gone_has_no_children():
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert procs.children(proc.pid) == []
