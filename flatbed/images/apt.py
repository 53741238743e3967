"""The host's apt configuration: which mirror it uses and which package versions it would fetch.

Images are built offline from Debian packages, so the host's own apt sources are the only
trustworthy mirror (users commonly point them at an apt cache); nothing is hard-coded.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SOURCES_LIST = Path("/etc/apt/sources.list")
SOURCES_DIR = Path("/etc/apt/sources.list.d")
LISTS_DIR = Path("/var/lib/apt/lists")
# What apt-cache's answers depend on: the package lists, sources, pinning, configuration and what is installed.
APT_STATE = (LISTS_DIR, SOURCES_LIST, SOURCES_DIR, Path("/etc/apt/preferences"), Path("/etc/apt/preferences.d"),
             Path("/etc/apt/apt.conf.d"), Path("/var/lib/dpkg/status"))


class AptError(RuntimeError):
    """The host's apt metadata cannot answer a question the builder needs answered."""


@dataclass(frozen=True)
class Source:
    """One ``deb`` source: a URI with its suites and components."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def parse_deb822_sources(text: str) -> list[Source]:
    """Parse a deb822 ``.sources`` file; only enabled stanzas of type ``deb`` are returned."""
    out: list[Source] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:  # continuation line of a multi-line field
                fields[key] += " " + raw.strip()
                continue
            if ":" not in raw:
                continue
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(fields.get("suites", "").split())
        comps = tuple(fields.get("components", "").split())
        out.extend(Source(uri, suites, comps) for uri in fields.get("uris", "").split())
    return out


def parse_one_line_sources(text: str) -> list[Source]:
    """Parse one-line ``sources.list`` text (``deb [options] URI suite comp...``)."""
    out: list[Source] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        words = line.split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # skip "[arch=amd64 signed-by=...]" options
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            out.append(Source(words[0], (words[1],), tuple(words[2:])))
    return out


def pick_debian_mirror(sources: Iterable[Source]) -> str | None:
    """Return the first source that carries Debian ``main`` and is not the security archive.

    The security archive only has updates, so debootstrap cannot bootstrap from it.
    """
    for src in sources:
        if "main" not in src.components:
            continue
        if any(s.endswith("-security") or "/updates" in s for s in src.suites):
            continue
        if "security" in src.uri:
            continue
        return src.uri
    return None


def host_sources(sources_list: Path = SOURCES_LIST, sources_dir: Path = SOURCES_DIR) -> list[Source]:
    """All ``deb`` sources configured on the host, one-line file first as apt reads them."""
    out: list[Source] = []
    if sources_list.is_file():
        out += parse_one_line_sources(sources_list.read_text())
    if sources_dir.is_dir():
        for path in sorted(sources_dir.iterdir()):
            if path.suffix == ".list":
                out += parse_one_line_sources(path.read_text())
            elif path.suffix == ".sources":
                out += parse_deb822_sources(path.read_text())
    return out


def detect_mirror(override: str | None = None) -> str:
    """The mirror to bootstrap from: ``override``, else ``$FLATBED_MIRROR``, else the host's.

    Raises :class:`AptError` with a one-line message when none is configured.
    """
    if override:
        return override
    env = os.environ.get("FLATBED_MIRROR")
    if env:
        return env
    mirror = pick_debian_mirror(host_sources())
    if not mirror:
        raise AptError(
            f"no Debian 'main' mirror in {SOURCES_LIST} or {SOURCES_DIR}/*.sources|*.list; "
            "pass mirror= or set FLATBED_MIRROR"
        )
    return mirror


# --- package versions ----------------------------------------------------------------------


@dataclass
class PolicyEntry:
    """One package from ``apt-cache policy``: candidate and the (version, origins) table."""

    candidate: str | None = None
    table: list[tuple[str, list[str]]] = field(default_factory=list)


_VERSION_LINE = re.compile(r"^ (?:\*\*\*| {3}) (\S+) (-?\d+)$")
_ORIGIN_LINE = re.compile(r"^ {8}-?\d+ (.+)$")


def parse_policy(text: str) -> dict[str, PolicyEntry]:
    """Parse ``apt-cache policy PKG...`` output into per-package entries.

    Origin strings look like ``http://deb.debian.org/debian bookworm/main amd64 Packages``.
    """
    out: dict[str, PolicyEntry] = {}
    current: PolicyEntry | None = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = out.setdefault(line[:-1], PolicyEntry())
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped.startswith("Candidate:"):
            value = stripped.split(":", 1)[1].strip()
            current.candidate = None if value == "(none)" else value
            continue
        match = _VERSION_LINE.match(line)
        if match:
            current.table.append((match.group(1), []))
            continue
        match = _ORIGIN_LINE.match(line)
        if match and current.table:
            current.table[-1][1].append(match.group(1))
    return out


def version_in_suite(entry: PolicyEntry, suite: str, mirror: str | None = None) -> str | None:
    """The newest version ``entry`` has in ``suite`` (``bookworm/main``), preferring ``mirror``.

    debootstrap fetches only from one suite, so the host's candidate (which may come from the
    security or updates suites) is not what ends up in the root. When the mirror is an override
    the host's lists do not know, any origin serving that suite is taken instead.
    """
    want = f" {suite} "  # origins read "URI bookworm/main amd64 Packages"
    fallback: str | None = None
    for version, origins in entry.table:  # apt lists the table newest first
        for origin in origins:
            if want not in f" {origin}":
                continue
            if mirror and origin.startswith(mirror.rstrip("/") + " "):
                return version
            fallback = fallback or version
    return fallback


def _lists_present(lists_dir: Path = LISTS_DIR) -> bool:
    # Lists may be stored compressed (``..._Packages.lz4``), so match the name's middle.
    return lists_dir.is_dir() and any("_Packages" in p.name for p in lists_dir.iterdir())


def ensure_lists(run_update: bool = True) -> None:
    """Run ``apt-get update`` once when the host has no package lists at all."""
    if _lists_present():
        return
    if not run_update:
        raise AptError("the host has no apt package lists; run 'apt-get update'")
    subprocess.run(["apt-get", "update", "-qq"], check=True)


def apt_state(paths: Sequence[Path] | None = None) -> str:
    """A digest of the files apt-cache reads (name, size, mtime; directories one level deep):
    the same digest, the same answers."""
    entries = []
    for path in APT_STATE if paths is None else paths:
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        for file in files:
            try:
                info = file.stat()
            except FileNotFoundError:
                continue
            entries.append(f"{file}\0{info.st_size}\0{info.st_mtime_ns}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def apt_cache(args: Sequence[str]) -> str:
    """``apt-cache ARGS``'s output, remembered in the image cache per :func:`apt_state`: every
    bring-up and ``--reuse`` asks the same questions (seconds of apt-cache each time), and the
    answers change only when apt's files do."""
    from flatbed.images.cache import cache_dir

    ensure_lists()
    key = hashlib.sha256("\0".join([apt_state(), *args]).encode()).hexdigest()
    answers = cache_dir() / ".apt-answers"
    remembered = answers / key
    if remembered.is_file():
        return remembered.read_text()
    text = subprocess.run(["apt-cache", *args], check=True, capture_output=True, text=True).stdout
    try:
        answers.mkdir(parents=True, exist_ok=True)
        partial = answers / f".{key}.{os.getpid()}"
        partial.write_text(text)
        partial.replace(remembered)  # whole or not at all, whoever else writes it
    except OSError:
        pass  # a read-only cache only costs the next run the same seconds
    return text


def policy(packages: Sequence[str]) -> dict[str, PolicyEntry]:
    """Run ``apt-cache policy`` for ``packages`` and parse it."""
    return parse_policy(apt_cache(["policy", *packages]))


def resolve_suite_versions(packages: Sequence[str], suite: str, mirror: str) -> dict[str, str]:
    """Versions of ``packages`` in ``suite``'s ``main`` as the host's apt lists know them."""
    table = policy(packages)
    out: dict[str, str] = {}
    missing: list[str] = []
    for pkg in packages:
        entry = table.get(pkg)
        version = version_in_suite(entry, f"{suite}/main", mirror) if entry else None
        if version is None:
            missing.append(pkg)
        else:
            out[pkg] = version
    if missing:
        raise AptError(f"not in {suite}/main per the host's apt lists: {' '.join(missing)}")
    return out


def resolve_candidates(packages: Sequence[str]) -> dict[str, str]:
    """Candidate versions (what ``apt-get download`` would fetch) of ``packages``."""
    table = policy(packages)
    out: dict[str, str] = {}
    missing = [p for p in packages if not (table.get(p) and table[p].candidate)]
    if missing:
        raise AptError(f"no apt candidate for: {' '.join(missing)}")
    for pkg in packages:
        candidate = table[pkg].candidate
        assert candidate is not None  # checked above
        out[pkg] = candidate
    return out


def candidate_depends(packages: Sequence[str], recurse: bool = False) -> dict[str, list[str]]:
    """Direct ``Depends``/``PreDepends`` of each package's candidate (first alternative each).

    With ``recurse`` the answer also covers everything reachable (one ``apt-cache`` run: each
    run costs about half a second here).
    """
    return parse_depends(apt_cache(["depends", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
                                    "--no-replaces", "--no-enhances", *(["--recurse"] if recurse else []), *packages]))


def closure_of(roots: Sequence[str], depends: dict[str, list[str]]) -> list[str]:
    """``roots`` plus everything reachable through ``depends`` (pure; first alternatives only)."""
    seen: list[str] = []
    todo = list(roots)
    while todo:
        pkg = todo.pop(0)
        if pkg in seen:
            continue
        seen.append(pkg)
        todo += [d for d in depends.get(pkg, []) if d not in seen]
    return seen


def dependency_closure(packages: Sequence[str]) -> list[str]:
    """``packages`` plus everything they depend on, recursively (first alternatives only)."""
    return closure_of(packages, candidate_depends(packages, recurse=True))


_DEP_KEYS = ("Depends:", "|Depends:", "PreDepends:", "|PreDepends:")


def parse_depends(text: str) -> dict[str, list[str]]:
    """Parse ``apt-cache depends`` output into package -> first alternative of each dependency.

    Virtual packages (``<name>``) are skipped; in the closures built here they have a real
    alternative or are provided by a package that is already listed.
    """
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    alternative = False
    for line in text.splitlines():
        if line and not line[0].isspace():
            current = out.setdefault(line.strip(), [])
            alternative = False
            continue
        stripped = line.strip()
        if current is None or not stripped.startswith(_DEP_KEYS):
            continue
        name = stripped.split(":", 1)[1].strip()
        if not alternative and not name.startswith("<") and name not in current:
            current.append(name)
        # A leading "|" means the next dependency line is another alternative of this one.
        alternative = stripped.startswith("|")
    return out
