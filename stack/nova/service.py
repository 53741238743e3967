"""What every nova daemon does first: read its flags (or print --help), set up logging, and turn
SIGTERM into a clean stop. Essex had this in ``nova/service.py`` and each ``bin/`` script.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from nova import flags, log


def start(binary: str, argv: list[str]) -> flags.Flags | int:
    """The flags of ``binary`` from ``--flagfile`` (default /etc/nova/nova.conf), logging set up.

    Returns an exit code instead when there is nothing to run: 0 after ``--help``, 2 on unknown
    arguments, 1 when the flagfile is unusable (its one-line error printed).
    """
    usage = f"usage: {binary} [--flagfile=PATH]"
    flagfile, rest = flags.flagfile_from_argv(argv)
    if rest:
        print(usage if rest != ["--help"] else f"{usage}\n\nflags:\n{flags.help_text()}", file=sys.stderr)
        return 0 if rest == ["--help"] else 2
    try:
        conf = flags.load(flagfile)
    except flags.FlagError as exc:
        print(exc, file=sys.stderr)
        return 1
    log.setup(binary, conf)
    return conf


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(f"caught {signal.Signals(signum).name}")


def stop_on_sigterm() -> None:
    """SIGTERM (systemctl stop) unwinds like SystemExit, so servers close and tasks are logged."""
    signal.signal(signal.SIGTERM, _stop)
