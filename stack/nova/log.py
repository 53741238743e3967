"""Logging set-up of the nova binaries, in Essex's line format.

Essex wrote ``2012-07-30 10:53:12 INFO nova.network.manager [-] message``; here the lines go to
stderr (journald under systemd) or, with ``--use_syslog``, to syslog as ``<binary>[pid]``.
"""

from __future__ import annotations

import logging
import logging.handlers
import os

from nova.flags import Flags

FORMAT = "%(asctime)s %(levelname)s %(name)s [-] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def setup(binary: str, flags: Flags) -> None:
    """Route the root logger to stderr or syslog; DEBUG with ``--verbose``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler: logging.Handler
    if flags.use_syslog and os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        prefix = f"{binary}[{os.getpid()}]: "
        handler.setFormatter(logging.Formatter(prefix + "%(levelname)s %(name)s [-] %(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if flags.verbose else logging.INFO)
