"""run_in_pty gives the program a terminal whatever our stdin is, feeds piped input, passes EOF and
the exit status on (host processes only, no nodes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def in_pty(script: str, stdin: str) -> subprocess.CompletedProcess:
    code = f"import sys; from flatbed.terminal import run_in_pty; sys.exit(run_in_pty(['sh', '-c', {script!r}]))"
    return subprocess.run([sys.executable, "-c", code], input=stdin, capture_output=True, text=True, timeout=30,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_program_gets_a_terminal_and_the_piped_input():
    proc = in_pty("tty; stty size; read line; echo got $line; exit 3", "hello\n")
    assert proc.returncode == 3
    lines = [line.strip() for line in proc.stdout.splitlines()]
    assert any(line.startswith("/dev/pts/") for line in lines)   # (the pty also echoes what was typed)
    assert "24 80" in lines                           # a default size when we have no terminal
    assert "got hello" in lines


def test_end_of_piped_input_reaches_the_program():
    proc = in_pty("cat; echo done", "a\nb\n")         # cat ends only on EOF
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[-1].strip() == "done"


def test_killed_program_reports_the_shells_convention():
    proc = in_pty("kill -9 $$", "")
    assert proc.returncode == 128 + 9


# A program that relays the terminal as ssh -t does: it reads nothing until it has put the pty in
# raw mode (after "connecting"), then passes bytes on; ^D ends its input as on a remote terminal.
RELAY = """
import os, sys, termios, time, tty
time.sleep(0.5)
tty.setraw(0)
data = b""
while not data.endswith(b"\\x04"):
    chunk = os.read(0, 1024)
    if not chunk:
        break
    data += chunk
os.write(1, repr(data).encode() + b"\\n")
"""


def test_piped_input_to_a_relaying_program_waits_for_its_raw_mode(tmp_path):
    relay = tmp_path / "relay.py"
    relay.write_text(RELAY)
    code = ("import sys; from flatbed.terminal import run_in_pty; "
            f"sys.exit(run_in_pty([sys.executable, {str(relay)!r}], relayed=True))")
    proc = subprocess.run([sys.executable, "-c", code], input="hostname\n", capture_output=True, text=True,
                          timeout=30, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    # Neither echoed by a canonical pty before the relay was up, nor its end turned into a NUL byte.
    assert proc.stdout.strip() == repr(b"hostname\n\x04"), proc.stdout
