"""What every nova daemon does: read its flags (or print --help), set up logging (``start``),
then serve until SIGTERM and close (``run``). Essex had this in ``nova/service.py`` and each
``bin/`` script.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from nova import flags, log, wsgi

LOG = logging.getLogger("nova.service")


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


def start_periodic_tasks(tasks: Callable[[], None], interval: float) -> threading.Event:
    """Essex's service loop: ``tasks()`` every ``interval`` s, the first after one interval.

    A failing round is logged and the next one runs all the same, as Essex did. Returns the event
    that stops the loop.
    """
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                tasks()
            except Exception:
                LOG.exception("Error during periodic tasks")
    threading.Thread(target=loop, name="periodic", daemon=True).start()
    return stop


def run(servers: Sequence[wsgi.Server], *, ready: Callable[[], None] | None = None,
        stopping: Callable[[], None] | None = None, errors: tuple[type[Exception], ...] = ()) -> int:
    """Serve ``servers`` until SIGTERM or Ctrl-C, then close them; the daemon's exit code.

    ``ready()`` runs once every server serves (set-up that may take calls already, the sd_notify);
    an exception of ``errors`` from it is logged and ends the daemon with 1. ``stopping()`` runs
    on a stop, before the servers close.
    """
    stop_on_sigterm()
    try:
        for server in servers:
            server.start()
        if ready is not None:
            ready()
        threading.Event().wait()
    except errors as exc:
        LOG.error("%s", exc)
        return 1
    except (SystemExit, KeyboardInterrupt) as exc:
        LOG.info("Stopping: %s", str(exc) or "interrupted")
        if stopping is not None:
            stopping()
    finally:
        for server in servers:
            server.server_close()
    return 0
