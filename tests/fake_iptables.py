"""A stand-in for the kernel's iptables, for unit tests without root or nodes.

``FakeIptables.execute`` answers ``iptables-save -t T`` and ``iptables-restore`` the way
iptables 1.8 does: restore replaces the whole table, save and ``-S`` print rules in iptables'
canonical form (``canonical``), chains in iptables' order. The tests check ``canonical`` against
the real iptables in a private network namespace (tests/test_stack_iptables_netns.py), so the
fake cannot drift from what a node shows.

Only the options nova's rules use are understood; anything else fails loudly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

BUILTIN_CHAINS = {"filter": ("INPUT", "FORWARD", "OUTPUT"),
                  "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}
# Order in which the state/conntrack matches print a state list.
STATE_ORDER = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")
ADDRESS_OPTS = {"-s": "-s", "--source": "-s", "--src": "-s", "-d": "-d", "--destination": "-d", "--dst": "-d"}
IFACE_OPTS = {"-i": "-i", "--in-interface": "-i", "-o": "-o", "--out-interface": "-o"}
PROTO_OPTS = ("-p", "--protocol")
MATCH_OPTS = {
    "tcp": ("--sport", "--dport"), "udp": ("--sport", "--dport"), "icmp": ("--icmp-type",),
    "state": ("--state",), "conntrack": ("--ctstate",), "multiport": ("--dports", "--sports", "--ports"),
}
TARGET_OPTS = ("--to-destination", "--to-source", "--to-ports")


class CanonicalError(ValueError):
    """A rule with options this stand-in does not model."""


def _address(value: str) -> str:
    network = ipaddress.ip_network(value, strict=False)
    return str(network)


def _states(value: str) -> str:
    states = value.split(",")
    unknown = [s for s in states if s not in STATE_ORDER]
    if unknown:
        raise CanonicalError(f"unknown state {unknown}")
    return ",".join(s for s in STATE_ORDER if s in states)


def canonical(rule: str) -> str:
    """The arguments of ``-A <chain> <rule>`` as ``iptables -S`` prints them back."""
    words = rule.split()
    parts: dict[str, str] = {}
    matches: list[tuple[str, list[str]]] = []
    target: list[str] = []
    index = 0
    negate = False

    def take() -> str:
        nonlocal index
        if index >= len(words):
            raise CanonicalError(f"{rule!r}: option without a value")
        value = words[index]
        index += 1
        return value

    while index < len(words):
        word = take()
        if word == "!":
            negate = True
            continue
        bang = "! " if negate else ""
        negate = False
        if word in ADDRESS_OPTS:
            value = _address(take())
            if value != "0.0.0.0/0" or bang:
                parts[ADDRESS_OPTS[word]] = f"{bang}{ADDRESS_OPTS[word]} {value}"
        elif word in IFACE_OPTS:
            parts[IFACE_OPTS[word]] = f"{bang}{IFACE_OPTS[word]} {take()}"
        elif word in PROTO_OPTS:
            parts["-p"] = f"{bang}-p {take()}"
        elif word == "-m":
            name = take()
            if name not in MATCH_OPTS:
                raise CanonicalError(f"{rule!r}: match {name!r} is not modelled")
            matches.append((name, []))
        elif word in ("-j", "--jump"):
            target = [take()]
        elif word in TARGET_OPTS:
            target += [word, take()]
        elif any(word in opts for opts in MATCH_OPTS.values()):
            value = take()
            if word == "--state" or word == "--ctstate":
                value = _states(value)
            # An option of an implicit match (``-p udp --dport 67``) loads the protocol's match.
            owner = next((m for m in reversed(matches) if word in MATCH_OPTS[m[0]]), None)
            if owner is None:
                proto = parts.get("-p", "").split()[-1:] or [""]
                if proto[0] not in MATCH_OPTS or word not in MATCH_OPTS[proto[0]]:
                    raise CanonicalError(f"{rule!r}: {word} without its match")
                owner = (proto[0], [])
                matches.insert(0, owner)
            owner[1].append(f"{bang}{word} {value}")
        else:
            raise CanonicalError(f"{rule!r}: option {word!r} is not modelled")
    out = [parts[key] for key in ("-s", "-d", "-i", "-o", "-p") if key in parts]
    for name, options in matches:
        order = MATCH_OPTS[name]
        options.sort(key=lambda opt: order.index(opt.lstrip("! ").split()[0]))
        out += [f"-m {name}", *options]
    if target:
        out += ["-j", *target]
    return " ".join(out)


class FakeIptables:
    """Tables of chains; ``execute`` speaks iptables-save/-restore for the IptablesManager."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, list[str]]] = {
            name: {chain: [] for chain in chains} for name, chains in BUILTIN_CHAINS.items()}
        self.commands: list[list[str]] = []

    def execute(self, argv: Sequence[str], stdin: str | None) -> str:
        self.commands.append(list(argv))
        if list(argv[:2]) == ["iptables-save", "-t"] and len(argv) == 3:
            return self.save(argv[2])
        if list(argv) == ["iptables-restore"] and stdin is not None:
            self.restore(stdin)
            return ""
        raise AssertionError(f"unexpected command {argv}")

    def _order(self, table: str) -> list[str]:
        builtins = BUILTIN_CHAINS[table]
        return [*builtins, *sorted(c for c in self.tables[table] if c not in builtins)]

    def save(self, table: str) -> str:
        chains = self.tables[table]
        lines = ["# Generated by fake iptables-save", f"*{table}"]
        for name in self._order(table):
            lines.append(f":{name} {'ACCEPT' if name in BUILTIN_CHAINS[table] else '-'} [0:0]")
        for name in self._order(table):
            lines += [f"-A {name} {rule}" for rule in chains[name]]
        return "\n".join(lines + ["COMMIT", "# Completed"]) + "\n"

    def restore(self, text: str) -> None:
        """Replace each table named in ``text``; a rule into an undeclared chain fails as iptables does."""
        table: str | None = None
        chains: dict[str, list[str]] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            if line.startswith("*"):
                table = line[1:].strip()
                chains = {chain: [] for chain in BUILTIN_CHAINS[table]}
            elif line.startswith(":"):
                name = line[1:].split()[0]
                if name in chains and name not in BUILTIN_CHAINS[table or ""]:
                    raise AssertionError(f"iptables-restore: line {number} failed: chain {name} already exists")
                chains.setdefault(name, [])
            elif line.startswith("-A "):
                _, chain, *rest = line.split(maxsplit=2)
                if chain not in chains:
                    raise AssertionError(f"iptables-restore: line {number} failed: no chain {chain}")
                rule = canonical(rest[0] if rest else "")
                jump = rule.split("-j ")[-1].split()[0] if "-j " in rule else None
                if jump and jump.startswith("nova") and jump not in chains:
                    raise AssertionError(f"iptables-restore: line {number} failed: no chain/target {jump}")
                chains[chain].append(rule)
            elif line.strip() == "COMMIT":
                assert table is not None
                self.tables[table] = chains
                table = None
            else:
                raise AssertionError(f"iptables-restore: line {number}: cannot parse {line!r}")

    def listing(self, table: str) -> list[str]:
        """``iptables -t <table> -S``."""
        chains = self.tables[table]
        builtins = BUILTIN_CHAINS[table]
        lines = [f"-P {name} ACCEPT" for name in builtins]
        lines += [f"-N {name}" for name in self._order(table) if name not in builtins]
        for name in self._order(table):
            lines += [f"-A {name} {rule}" for rule in chains[name]]
        return lines
