"""Is this host ready to run testbeds? What ``flatbed check`` prints on a new CI runner.

Each check (:mod:`.checks`) reads facts about the host (:mod:`.host`: KVM booting a kernel for
real, nested virtualization, Vagrant and vagrant-libvirt, libvirt answering, memory and disk for
one testbed per worker, the image cache) and gives a verdict with the fix. A provider is ready
when none of its checks failed; ``auto`` stands for the one the suite would pick (VMs where they
can run with KVM, containers otherwise), so the report also says which that is and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from flatbed.readiness.checks import FAIL, PROVIDERS, SKIP, WARN, Context, Result, run
from flatbed.readiness.host import Host


@dataclass(frozen=True)
class Report:
    provider: str                  # as asked: auto, nspawn or vagrant
    results: list[Result]

    def failures(self, provider: str) -> list[Result]:
        return [r for r in self.results if r.verdict == FAIL and r.provider in (provider, "all")]

    def can_run(self, provider: str) -> bool:
        return not self.failures(provider)

    def kvm_usable(self) -> bool:
        return any(r.check == "KVM" and r.verdict == "ok" for r in self.results)

    def chosen(self) -> str | None:
        """The provider the verdict is about: as asked, or the one ``auto`` picks (None: none can run)."""
        if self.provider != "auto":
            return self.provider
        if self.can_run("vagrant") and self.kvm_usable():
            return "vagrant"
        return "nspawn" if self.can_run("nspawn") else None

    @property
    def ok(self) -> bool:
        chosen = self.chosen()
        return chosen is not None and self.can_run(chosen)

    def summary(self) -> list[str]:
        lines = []
        for provider in self.asked():
            failed = self.failures(provider)
            warned = [r.check for r in self.results if r.verdict == WARN and r.provider == provider]
            if failed:
                lines.append(f"{provider}: cannot run here ({', '.join(r.check for r in failed)} failed)")
            elif warned:
                lines.append(f"{provider}: can run, with warnings ({', '.join(warned)})")
            else:
                lines.append(f"{provider}: ready")
        if self.provider == "auto":
            chosen = self.chosen()
            if chosen == "vagrant":
                lines.append("--provider auto picks vagrant (VMs under KVM)")
            elif chosen == "nspawn":
                why = "VMs cannot run here" if not self.can_run("vagrant") else "KVM does not boot a kernel here"
                lines.append(f"--provider auto picks nspawn (containers): {why}")
            else:
                lines.append("--provider auto finds no provider that can run here")
        return lines

    def asked(self) -> tuple[str, ...]:
        return PROVIDERS if self.provider == "auto" else (self.provider,)

    def as_dict(self) -> dict:
        return {"provider": self.provider, "chosen": self.chosen(), "ok": self.ok,
                "checks": [r.__dict__ for r in self.results]}


def evaluate(provider: str = "auto", workers: int = 1, libvirt_uri: str | None = None,
             host: Host | None = None) -> Report:
    asked = PROVIDERS if provider == "auto" else (provider,)
    return Report(provider, run(host or Host(), Context(workers=workers, libvirt_uri=libvirt_uri), asked))


def render(report: Report) -> str:
    """The table: check, whose, verdict, detail; the fix on the line below a verdict that is not ok."""
    rows = [("CHECK", "FOR", "VERDICT", "DETAIL")]
    fixes: dict[int, str] = {}
    for r in report.results:
        rows.append((r.check, r.provider, r.verdict, r.detail))
        if r.fix and r.verdict not in ("ok", SKIP):
            fixes[len(rows) - 1] = r.fix
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
        if n in fixes:
            out.append(" " * (sum(widths) + 6) + f"fix: {fixes[n]}")
    return "\n".join(out + [""] + report.summary()) + "\n"
