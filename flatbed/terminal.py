"""Interactive sessions for the CLI: a pty for a node's shell, a raw terminal for a guest's SSH channel.

``flatbed ssh NODE`` runs the provider's host command (nsenter for containers) on a new
pseudo-terminal, so the shell on the node has a controlling terminal whatever our stdin is;
``flatbed ssh GUEST`` relays a paramiko channel. Both put the user's terminal in raw mode while
they run and follow window-size changes. With a pipe as stdin (scripts, tests) the input is
fed as typed and end-of-file is passed on.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

EOT = b"\x04"  # what a terminal sends for Ctrl-D: end of input for the program on the pty
# A relaying program (ssh -t) switches our pty to raw mode once its session is up (connect and
# login); piped input waits for that, at most this long.
RAW_TIMEOUT = 60.0


@contextmanager
def raw_terminal(fd: int) -> Iterator[bool]:
    """Raw mode on ``fd`` for the block when it is a terminal; yields whether it is one."""
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def window_size(fd: int) -> tuple[int, int]:
    """(rows, columns) of the terminal on ``fd``; 24x80 when it is none."""
    try:
        rows, cols = os.get_terminal_size(fd)[::-1]
        return rows, cols
    except OSError:
        return 24, 80


def _copy_window_size(src: int, dst: int) -> None:
    """The size of the terminal on ``src`` to the pty ``dst`` (24x80 when ``src`` is no terminal)."""
    rows, cols = window_size(src)
    fcntl.ioctl(dst, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def run_in_pty(argv: list[str], *, relayed: bool = False) -> int:
    """Run ``argv`` on a new pseudo-terminal relaying our stdin/stdout; return its exit code.

    ``relayed``: ``argv`` relays the terminal to one of its own (``ssh -t``) and puts ours in raw
    mode when its session is up. Piped input is then held until it has: typed into a pty still in
    canonical mode it would be echoed here, and its end (Ctrl-D) would reach the program as a NUL
    byte instead of the end of input on the remote terminal.
    """
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    pid, master = pty.fork()
    if pid == 0:  # child: the pty is its controlling terminal and stdio
        try:
            os.execvp(argv[0], argv)
        except OSError as e:
            os.write(2, f"flatbed: error: cannot run {argv[0]}: {e.strerror}\r\n".encode())
        os._exit(127)
    _copy_window_size(stdin, master)
    previous = signal.signal(signal.SIGWINCH, lambda *_: _copy_window_size(stdin, master))
    try:
        with raw_terminal(stdin) as is_tty:
            _relay_fd(stdin, stdout, master, is_tty, relayed)
    finally:
        signal.signal(signal.SIGWINCH, previous)
        os.close(master)
    _, status = os.waitpid(pid, 0)
    return _exit_code(status)


def _is_raw(master: int) -> bool:
    """Whether the program on the pty has switched it out of canonical mode."""
    return not termios.tcgetattr(master)[3] & termios.ICANON


def _relay_fd(stdin: int, stdout: int, master: int, is_tty: bool, relayed: bool = False) -> None:
    inputs = [stdin, master]
    held, ended = b"", False           # piped input not passed on yet, and whether it has ended
    hold_until = time.monotonic() + RAW_TIMEOUT if relayed and not is_tty else 0.0
    while True:
        if (held or ended) and (time.monotonic() >= hold_until or _is_raw(master)):
            os.write(master, held + (EOT if ended else b""))  # EOT: a piped script ended, end of input there too
            held, ended, hold_until = b"", False, 0.0
        try:
            ready, _, _ = select.select(inputs, [], [], 0.1 if held or ended else None)
        except InterruptedError:  # SIGWINCH
            continue
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the program on the pty has exited
                return
            if not data:
                return
            os.write(stdout, data)
        if stdin in ready:
            data = os.read(stdin, 65536)
            if not data:
                inputs.remove(stdin)
                ended = not is_tty
            elif hold_until:
                held += data
            else:
                os.write(master, data)


def relay_channel(channel: Any) -> int:
    """Relay our terminal to an interactive paramiko channel (with a pty); return the exit status."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    previous = signal.signal(signal.SIGWINCH, lambda *_: channel.resize_pty(*window_size(stdin)[::-1]))
    try:
        with raw_terminal(stdin) as is_tty:
            inputs: list[Any] = [stdin, channel]
            while True:
                try:
                    ready, _, _ = select.select(inputs, [], [])
                except InterruptedError:
                    continue
                if channel in ready:
                    data = channel.recv(65536)
                    if not data:
                        break
                    os.write(stdout, data)
                if stdin in ready:
                    data = os.read(stdin, 65536)
                    if data:
                        channel.sendall(data)
                    else:
                        inputs.remove(stdin)
                        if not is_tty:
                            channel.sendall(EOT)  # the remote side has a pty: EOF is Ctrl-D
    finally:
        signal.signal(signal.SIGWINCH, previous)
    return channel.recv_exit_status()


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by a signal: the shell's convention
