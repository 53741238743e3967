"""`flatbed check`: each readiness check failing on its own, the verdict per provider, the exit code
and what ``auto`` picks (a fake host; no probe runs)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from flatbed import readiness
from flatbed.images.cache import CachedImage
from flatbed.readiness import checks, libvirt_probe
from flatbed.readiness.host import Host, KvmAnswer, LibvirtAnswer, parse_plugin_list

GiB = 2**30


class FakeHost(Host):
    """A host where everything is ready (KVM included); a test breaks one fact."""

    def __init__(self, tmp: Path, **facts):
        self.tmp = tmp
        self.facts = {
            "euid": 0, "missing": set(), "cgroup2": True,
            "kvm": KvmAnswer(True, "a kernel reached userspace under KVM in 0.3 s"), "nested_param": "Y",
            "vagrant": "2.3.4", "plugins": {"vagrant-libvirt": "0.11.2"},
            "libvirt": LibvirtAnswer(version="9.0.0", domain_types=("kvm", "qemu"),
                                     nested_cpu={"kvm": True, "qemu": True}),
            "mem": 20 * GiB, "disk": 70 * GiB, "cache_disk": 70 * GiB, "images": ("base", "guest", "box"),
        }
        self.facts.update(facts)
        self.asked_libvirt: list[str | None] = []

    def euid(self): return self.facts["euid"]
    def which(self, tool): return None if tool in self.facts["missing"] else f"/usr/bin/{tool}"
    def cgroup2(self): return self.facts["cgroup2"]
    def kvm(self): return self.facts["kvm"]
    def kvm_nested_parameter(self): return self.facts["nested_param"]
    def vagrant_version(self): return self.facts["vagrant"]
    def vagrant_plugins(self): return self.facts["plugins"]
    def mem_available(self): return self.facts["mem"]
    def disk_free(self, path): return self.facts["cache_disk" if path == self.cache_root() else "disk"]
    def state_root(self): return self.tmp / "state"
    def cache_root(self): return self.tmp / "cache"

    def libvirt(self, uri):
        self.asked_libvirt.append(uri)
        return self.facts["libvirt"]

    def images(self):
        return tuple(CachedImage(kind, "0" * 16, self.tmp / kind, 1, True) for kind in self.facts["images"])


def verdicts(report: readiness.Report) -> dict[tuple[str, str], str]:
    return {(r.check, r.provider): r.verdict for r in report.results}


def test_a_ready_host_passes_every_check_for_both_and_auto_picks_vms(tmp_path):
    report = readiness.evaluate("auto", host=FakeHost(tmp_path))
    assert set(verdicts(report).values()) == {"ok"}
    assert report.ok and report.chosen() == "vagrant"
    assert report.summary() == ["nspawn: ready", "vagrant: ready", "--provider auto picks vagrant (VMs under KVM)"]


# (fact broken, the check it breaks, whose, its verdict, other rows it changes): every check of
# checks.REGISTRY appears; everything not named stays ok.
BROKEN = [
    ({"euid": 1000}, "root", "all", "FAIL", {}),
    ({"missing": {"systemd-nspawn"}}, "container tools", "nspawn", "FAIL", {}),
    ({"cgroup2": False}, "cgroup v2", "nspawn", "FAIL", {}),
    ({"missing": {"qemu-img"}}, "VM tools", "vagrant", "FAIL", {}),
    ({"vagrant": None}, "vagrant", "vagrant", "FAIL", {("vagrant-libvirt", "vagrant"): "skip"}),
    ({"vagrant": "2.2.19"}, "vagrant", "vagrant", "warn", {}),
    ({"plugins": {}}, "vagrant-libvirt", "vagrant", "FAIL", {}),
    ({"plugins": {"vagrant-libvirt": "0.7.0"}}, "vagrant-libvirt", "vagrant", "warn", {}),
    ({"libvirt": LibvirtAnswer(error="a private libvirtd exited 1 at start: cannot bind")}, "libvirt", "vagrant",
     "FAIL", {("nested virtualization", "vagrant"): "skip"}),
    ({"libvirt": LibvirtAnswer(version="9.0.0", domain_types=("lxc",))}, "libvirt", "vagrant", "FAIL",
     {("nested virtualization", "vagrant"): "warn"}),
    ({"kvm": KvmAnswer(False, "a kernel did not reach userspace under KVM within 20 s")}, "KVM", "vagrant",
     "warn", {}),
    ({"kvm": None}, "KVM", "vagrant", "warn", {}),
    ({"libvirt": LibvirtAnswer(version="9.0.0", domain_types=("kvm", "qemu"), nested_cpu={"kvm": False})},
     "nested virtualization", "vagrant", "warn", {}),
    ({"mem": 1 * GiB}, "memory", "nspawn", "FAIL", {("memory", "vagrant"): "FAIL"}),
    ({"mem": 3 * GiB}, "memory", "vagrant", "FAIL", {}),
    ({"disk": GiB // 2}, "disk", "nspawn", "FAIL", {("disk", "vagrant"): "FAIL"}),
    ({"disk": GiB + GiB // 2}, "disk", "vagrant", "FAIL", {}),
    ({"images": ("base",)}, "image cache", "nspawn", "warn", {("image cache", "vagrant"): "warn"}),
    ({"images": ("base", "guest")}, "image cache", "vagrant", "warn", {}),
    ({"images": (), "cache_disk": 1 * GiB}, "image cache", "vagrant", "FAIL", {("image cache", "nspawn"): "warn"}),
]


@pytest.mark.parametrize(("facts", "name", "provider", "verdict", "also"), BROKEN,
                         ids=[f"{row[1]}-{row[3]}-{i}" for i, row in enumerate(BROKEN)])
def test_each_check_fails_on_its_own_with_a_fix(tmp_path, facts, name, provider, verdict, also):
    report = readiness.evaluate("auto", host=FakeHost(tmp_path, **facts))
    found = [r for r in report.results if (r.check, r.provider) == (name, provider)]
    assert [r.verdict for r in found] == [verdict]
    assert found[0].fix, f"{name}: a verdict that is not ok says how to fix it"
    assert {k: v for k, v in verdicts(report).items() if v != "ok"} == {(name, provider): verdict, **also}
    # a FAIL stops the provider it is for (root: both); a warning never does
    failed = {p for (_, p), v in {(name, provider): verdict, **also}.items() if v == "FAIL"}
    for p in ("nspawn", "vagrant"):
        assert report.can_run(p) == (not failed & {p, "all"})


def test_every_registered_check_is_broken_by_some_row():
    assert {name for name, _, _ in checks.REGISTRY} == {row[1] for row in BROKEN}


@pytest.mark.parametrize(("facts", "asked", "rc"), [
    ({}, "nspawn", 0),
    ({"cgroup2": False}, "nspawn", 1),
    ({"cgroup2": False}, "vagrant", 0),          # the VM provider does not need it
    ({"plugins": {}}, "vagrant", 1),
    ({"plugins": {}}, "nspawn", 0),
    ({"plugins": {}}, "auto", 0),                # auto falls back to containers
    ({"euid": 1000}, "auto", 1),                 # nothing runs without root
    ({"mem": 3 * GiB}, "vagrant", 1),
])
def test_exit_code_follows_the_chosen_provider(tmp_path, monkeypatch, capsys, facts, asked, rc):
    from flatbed import cli

    host = FakeHost(tmp_path, **facts)
    monkeypatch.setattr(readiness, "Host", lambda: host)
    assert cli.main(["check", "--provider", asked]) == rc
    out = capsys.readouterr().out
    assert out.startswith("CHECK")
    if asked != "auto":
        assert (f"{asked}: cannot run here" in out) == bool(rc)


def test_this_machine_kind_tcg_vms_are_slow_and_containers_pass(tmp_path):
    """What `flatbed check` says on the project's machine kind: KVM hangs, VMs run under TCG."""
    host = FakeHost(tmp_path, kvm=KvmAnswer(False, "a kernel did not reach userspace under KVM within 20 s "
                                                   "(stock kernels hang on this host's KVM)"))
    report = readiness.evaluate("auto", host=host)
    kvm = next(r for r in report.results if r.check == "KVM")
    assert kvm.verdict == "warn" and "VMs will be slow" in kvm.detail and "TCG" in kvm.detail
    assert report.ok and report.chosen() == "nspawn"
    assert report.summary()[-1] == "--provider auto picks nspawn (containers): KVM does not boot a kernel here"
    text = readiness.render(report)
    assert "fix: a host whose KVM boots stock kernels" in text
    # under TCG the nested check reads the TCG CPU's answer
    nested = next(r for r in report.results if r.check == "nested virtualization")
    assert nested.verdict == "ok" and "under TCG" in nested.detail


def test_workers_multiply_memory_and_disk(tmp_path):
    host = FakeHost(tmp_path, mem=5 * GiB, disk=70 * GiB)
    assert readiness.evaluate("nspawn", workers=2, host=host).ok
    assert not readiness.evaluate("nspawn", workers=3, host=host).ok
    row = next(r for r in readiness.evaluate("nspawn", workers=3, host=host).results if r.check == "memory")
    assert "3 workers x 2.0 GiB = 6.0 GiB needed" in row.detail


def test_containers_only_never_ask_libvirt_or_kvm(tmp_path):
    host = FakeHost(tmp_path, kvm=None)
    report = readiness.evaluate("nspawn", host=host)
    assert host.asked_libvirt == [] and {r.provider for r in report.results} <= {"nspawn", "all"}


def test_libvirt_uri_is_asked_instead_of_a_private_daemon(tmp_path):
    host = FakeHost(tmp_path)
    report = readiness.evaluate("vagrant", libvirt_uri="qemu:///system", host=host)
    assert set(host.asked_libvirt) == {"qemu:///system"}
    assert "qemu:///system" in next(r.detail for r in report.results if r.check == "libvirt")


def test_nested_fix_names_the_module_parameter_under_kvm(tmp_path):
    host = FakeHost(tmp_path, nested_param="N", libvirt=LibvirtAnswer(version="9.0.0", domain_types=("kvm",),
                                                                      nested_cpu={"kvm": False}))
    row = next(r for r in readiness.evaluate("vagrant", host=host).results if r.check == "nested virtualization")
    assert row.verdict == "warn" and "nested TCG" in row.detail and "now nested=N" in row.fix


def test_plugin_list_parsing():
    text = "vagrant-libvirt (0.11.2, system)\nvagrant-mutate (1.2.0, global)\n  - Version Constraint: > 0\n"
    assert parse_plugin_list(text) == {"vagrant-libvirt": "0.11.2", "vagrant-mutate": "1.2.0"}


DOMCAPS = """<domainCapabilities><cpu>
    <mode name='host-passthrough' supported='yes'/>
    <mode name='host-model' supported='yes'>
      <model fallback='forbid'>EPYC</model>
      <vendor>AMD</vendor>
      <feature policy='require' name='npt'/>
    </mode>
</cpu></domainCapabilities>"""


def test_host_model_cpu_and_its_virtualization_flag():
    cpu = libvirt_probe.host_model_cpu(DOMCAPS)
    assert cpu.startswith("<cpu mode='custom' match='exact'>") and "<model>EPYC</model>" in cpu
    assert "fallback" not in cpu and "<feature policy='require' name='npt'/>" in cpu
    assert libvirt_probe.offers_virtualization("<cpu><feature policy='require' name='svm'/></cpu>")
    assert not libvirt_probe.offers_virtualization("<cpu><feature policy='disable' name='vmx'/></cpu>")
    with pytest.raises(ValueError):
        libvirt_probe.host_model_cpu(DOMCAPS.replace("host-model", "custom"))


def test_json_report_round_trips(tmp_path):
    import json

    report = readiness.evaluate("auto", host=FakeHost(tmp_path, plugins={}))
    data = json.loads(json.dumps(report.as_dict()))
    assert data["chosen"] == "nspawn" and data["ok"] is True
    assert replace(report.results[0]).check == data["checks"][0]["check"] == "root"
