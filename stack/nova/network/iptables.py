"""Essex's IptablesManager: each nova binary owns a set of wrapped chains and rewrites them whole.

The model (nova 2012.1 ``nova/network/linux_net.py``, re-written here from its behaviour):

* The binary name is the basename of ``argv[0]`` cut to 16 characters (``nova-network``,
  ``nova-compute``, ``nova-api``). A *wrapped* chain ``X`` exists as ``<binary>-X``; in rule
  text ``$X`` expands to ``<binary>-X``.
* filter ``INPUT``/``OUTPUT``/``FORWARD`` and nat ``PREROUTING``/``OUTPUT``/``POSTROUTING`` are
  wrapped: the built-in chain jumps to ``<binary>-<chain>``.
* Shared, unwrapped chains: ``nova-filter-top`` sits at the top of FORWARD and OUTPUT and jumps
  to each binary's ``<binary>-local``; ``nova-postrouting-bottom`` is jumped to from POSTROUTING
  and jumps to each binary's ``<binary>-snat``, whose first rule is ``-j <binary>-float-snat``.
* ``apply()`` runs ``iptables-save -t <table>``, drops every line naming this binary, inserts
  this binary's chains and rules *before all the rules already there*, drops duplicate lines
  keeping the *last* one, and loads the result with ``iptables-restore`` — all under a file lock
  shared by every nova binary of the host (``<lock_path>/nova-iptables.lock``).

Consequence, kept on purpose: the jumps of several binaries in a shared chain (INPUT, FORWARD,
``nova-filter-top``, ``nova-postrouting-bottom``, ...) are ordered by *who applied last*: the
latest writer's jump comes first. The document's controller lists ``nova-network`` before
``nova-api`` everywhere because nova-network applied last (it was started after nova-api);
restarting nova-api afterwards would flip every pair, restarting nova-network leaves them. Two
exceptions follow from the rules above: ``-j nova-filter-top`` is a *top* rule and always stays
first in FORWARD/OUTPUT, and ``-j nova-postrouting-bottom`` names no binary, so the copy already
there (after the other binaries' jumps) is the one kept: it stays last in POSTROUTING.

Rules are kept in nova's text (``--in-interface br100``, ``-s 0.0.0.0/0 ...``); iptables prints
them in its canonical form (``-i br100``, no ``-s 0.0.0.0/0``, ``/32`` added), which is what the
tests compare.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence

LOG = logging.getLogger("nova.network.iptables")

BINARY_NAME_MAX = 16  # chain names are limited to 28 characters; wrapping adds up to 12
DEFAULT_LOCK_PATH = "/var/lock/nova"
LOCK_NAME = "nova-iptables.lock"  # Essex: utils.synchronized('iptables', external=True)

# Built-in chains every binary wraps, per table (Essex's IPv4 set).
WRAPPED_BUILTINS = {"filter": ("INPUT", "OUTPUT", "FORWARD"),
                    "nat": ("PREROUTING", "OUTPUT", "POSTROUTING")}

Executor = Callable[[Sequence[str], "str | None"], str]


class IptablesError(Exception):
    """iptables-save/-restore failed; the message names the command and its error output."""


def binary_name(argv0: str | None = None) -> str:
    """The name this process's chains carry: basename of ``argv[0]``, at most 16 characters."""
    return os.path.basename(argv0 if argv0 is not None else sys.argv[0])[:BINARY_NAME_MAX]


class IptablesRule:
    """One rule of a table: ``-A <chain> <rule>``, the chain wrapped unless ``wrap`` is False."""

    def __init__(self, binary: str, chain: str, rule: str, wrap: bool = True, top: bool = False) -> None:
        self.binary = binary
        self.chain = chain
        self.rule = rule
        self.wrap = wrap
        self.top = top

    def key(self) -> tuple[str, str, bool, bool]:
        return (self.chain, self.rule, self.wrap, self.top)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IptablesRule) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __str__(self) -> str:
        chain = f"{self.binary}-{self.chain}" if self.wrap else self.chain
        return f"-A {chain} {self.rule}"

    def __repr__(self) -> str:
        return f"IptablesRule({str(self)!r}, top={self.top})"


class IptablesTable:
    """The chains and rules one binary wants in one table (Essex's IptablesTable interface)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.rules: list[IptablesRule] = []
        self.chains: set[str] = set()
        self.unwrapped_chains: set[str] = set()

    def add_chain(self, name: str, wrap: bool = True) -> None:
        """Declare a chain; wrapped, ``OUTPUT`` of nova-compute becomes ``nova-compute-OUTPUT``."""
        (self.chains if wrap else self.unwrapped_chains).add(name)

    def remove_chain(self, name: str, wrap: bool = True) -> None:
        """Remove a chain, its rules and every rule jumping to it (Essex: the removal cascades)."""
        chain_set = self.chains if wrap else self.unwrapped_chains
        if name not in chain_set:
            LOG.debug("Attempted to remove chain %s which does not exist", name)
            return
        chain_set.remove(name)
        # Essex matched the jump as a substring (removing inst-1 also dropped jumps to inst-10);
        # here it must be the whole target word.
        jump = f"-j {self.binary}-{name} " if wrap else f"-j {name} "
        self.rules = [r for r in self.rules
                      if not (r.chain == name and r.wrap == wrap) and jump not in _words_joined(r.rule)]

    def add_rule(self, chain: str, rule: str, wrap: bool = True, top: bool = False) -> None:
        """Add ``rule`` (iptables arguments without ``-A <chain>``) to ``chain``.

        ``$name`` in the rule names a wrapped chain of this binary. Adding a rule that is already
        there moves it to the end: Essex appended the copy and, at apply, kept the last of
        identical lines — the same order, without the list growing on every allocation.
        """
        if wrap and chain not in self.chains:
            raise ValueError(f"Unknown chain: {chain!r}")
        if "$" in rule:
            rule = " ".join(self._wrap_target_chain(word) for word in rule.split(" "))
        new = IptablesRule(self.binary, chain, rule, wrap, top)
        if new in self.rules:
            self.rules.remove(new)
        self.rules.append(new)

    def _wrap_target_chain(self, word: str) -> str:
        return f"{self.binary}-{word[1:]}" if word.startswith("$") else word

    def remove_rule(self, chain: str, rule: str, wrap: bool = True, top: bool = False) -> None:
        """Remove a rule added with exactly these arguments; a missing one is only logged."""
        if "$" in rule:
            rule = " ".join(self._wrap_target_chain(word) for word in rule.split(" "))
        try:
            self.rules.remove(IptablesRule(self.binary, chain, rule, wrap, top))
        except ValueError:
            LOG.debug("Tried to remove rule that was not there: %r %r %r %r", chain, rule, wrap, top)

    def empty_chain(self, chain: str, wrap: bool = True) -> None:
        """Remove every rule of ``chain``, keeping the chain."""
        self.rules = [r for r in self.rules if not (r.chain == chain and r.wrap == wrap)]


def _words_joined(rule: str) -> str:
    return " ".join(rule.split()) + " "


def _run(cmd: Sequence[str], stdin: str | None) -> str:
    try:
        result = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, timeout=60,
                                stdin=None if stdin is not None else subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IptablesError(f"{' '.join(cmd)}: {exc}") from None
    if result.returncode != 0:
        raise IptablesError(f"{' '.join(cmd)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


class IptablesManager:
    """One binary's view of the host's iptables, applied with iptables-save/-restore.

    ``execute(argv, stdin) -> stdout`` runs the two commands (tests pass a fake); ``lock_path``
    is the directory of the lock file every nova binary of the host shares.
    """

    def __init__(self, binary: str | None = None, execute: Executor | None = None,
                 lock_path: str = DEFAULT_LOCK_PATH) -> None:
        self.binary = binary or binary_name()
        if not self.binary or len(self.binary) > BINARY_NAME_MAX:
            raise ValueError(f"binary name {self.binary!r} must have 1 to {BINARY_NAME_MAX} characters")
        self.execute: Executor = execute or _run
        self.lock_path = lock_path
        self._thread_lock = threading.Lock()
        self.ipv4 = {"filter": IptablesTable(self.binary), "nat": IptablesTable(self.binary)}

        # nova-filter-top: shared, at the very top of FORWARD and OUTPUT; each binary's `local`
        # hangs off it (instance dispatch on computes goes there).
        filter_table = self.ipv4["filter"]
        filter_table.add_chain("nova-filter-top", wrap=False)
        filter_table.add_rule("FORWARD", "-j nova-filter-top", wrap=False, top=True)
        filter_table.add_rule("OUTPUT", "-j nova-filter-top", wrap=False, top=True)
        filter_table.add_chain("local")
        filter_table.add_rule("nova-filter-top", "-j $local", wrap=False)

        # The built-in chains, each jumping to this binary's wrapped copy.
        for table, chains in WRAPPED_BUILTINS.items():
            for chain in chains:
                self.ipv4[table].add_chain(chain)
                self.ipv4[table].add_rule(chain, f"-j ${chain}", wrap=False)

        # nova-postrouting-bottom: shared, the last jump of POSTROUTING; each binary's snat hangs
        # off it, and snat first hands over to float-snat (floating IPs, empty here).
        nat = self.ipv4["nat"]
        nat.add_chain("nova-postrouting-bottom", wrap=False)
        nat.add_rule("POSTROUTING", "-j nova-postrouting-bottom", wrap=False)
        nat.add_chain("snat")
        nat.add_rule("nova-postrouting-bottom", "-j $snat", wrap=False)
        nat.add_chain("float-snat")
        nat.add_rule("snat", "-j $float-snat")

    # --- applying -------------------------------------------------------------------------------

    def apply(self) -> None:
        """Replace this binary's chains and rules in the kernel with the ones held here."""
        with self._thread_lock, self._file_lock():
            for table_name, table in self.ipv4.items():
                current = self.execute(["iptables-save", "-t", table_name], None)
                new_lines = self.modify_rules(current.split("\n"), table)
                self.execute(["iptables-restore"], "\n".join(new_lines) + "\n")
        LOG.debug("IPTablesManager.apply completed for %s", self.binary)

    def _file_lock(self) -> _FileLock:
        return _FileLock(os.path.join(self.lock_path, LOCK_NAME))

    def modify_rules(self, current_lines: Iterable[str], table: IptablesTable) -> list[str]:
        """The ``iptables-restore`` input for ``table``, given its ``iptables-save`` output.

        Essex's algorithm: drop every line naming this binary; put this binary's chain
        declarations and rules right after the existing chain declarations, i.e. before every
        existing rule; a top rule first removes its existing copies; of identical lines the last
        one stays.
        """
        lines = [line for line in current_lines if self.binary not in line]
        index = _rules_index(lines)
        ours = []
        for rule in table.rules:
            text = str(rule)
            if rule.top:
                # Its existing copies (all after `index`) go now, so the weeding keeps ours on top.
                lines = [line for line in lines if line.strip() != text.strip()]
            ours.append(text)
        declarations = ([f":{self.binary}-{name} - [0:0]" for name in sorted(table.chains)]
                        + [f":{name} - [0:0]" for name in sorted(table.unwrapped_chains)])
        merged = lines[:index] + declarations + ours + lines[index:]
        seen: set[str] = set()
        kept_reversed = []
        for line in reversed(merged):
            stripped = line.strip()
            if stripped and stripped in seen:
                continue
            seen.add(stripped)
            kept_reversed.append(line)
        return [line for line in reversed(kept_reversed) if line.strip()]


def _rules_index(lines: Sequence[str]) -> int:
    """Where the rules start: the line after the first run of ``:chain`` declarations."""
    seen_chains = False
    for index, line in enumerate(lines):
        if line.startswith(":"):
            seen_chains = True
        elif seen_chains:
            return index
    raise IptablesError("iptables-save printed no chain declarations; is the table available?")


class _FileLock:
    """An exclusive flock on a file shared by every nova binary of the host."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> _FileLock:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
