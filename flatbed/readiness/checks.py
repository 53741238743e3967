"""The host-readiness checks: each reads a :class:`~flatbed.readiness.host.Host` and gives a verdict
and, when it is not ok, the fix.

``FAIL`` means the provider the check is for cannot run here; ``warn`` that it runs, slower or
after a first build; ``skip`` that the check could not be made (a check it depends on failed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from flatbed.readiness.host import Host

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
PROVIDERS = ("nspawn", "vagrant")
GiB = 2**30


@dataclass(frozen=True)
class Need:
    """What one worker's testbeds take at their peak: the session's testbed with its guests, plus a
    module's second testbed (``test_40``, ``test_43``) up beside it."""

    memory: int
    disk: int


# Measured on this project's machine kind: a container testbed is ~130 MiB of processes plus
# ~245 MiB per running guest and ~130 MiB on disk with three guests; a VM testbed peaks at
# 4.7 GiB (three TCG VMs and a guest) and takes the box volume (540 MiB) plus ~25 MiB per VM.
NEEDS = {
    "nspawn": Need(memory=2 * GiB, disk=1 * GiB),
    "vagrant": Need(memory=5 * GiB, disk=2 * GiB),
}
IMAGE_KINDS = {"nspawn": ("base", "guest"), "vagrant": ("base", "guest", "box")}
IMAGE_SIZES = {"base": 450 * 2**20, "guest": 20 * 2**20, "box": 1150 * 2**20}  # box: cache + Vagrant's store
TESTED = {"vagrant": (2, 3), "vagrant-libvirt": (0, 11)}  # Debian 12's, what the VM suite runs on

# tool -> the Debian package that has it
CONTAINER_TOOLS = {"systemd-nspawn": "systemd-container", "nsenter": "util-linux", "unshare": "util-linux"}
VM_TOOLS = {"vagrant": "vagrant", "libvirtd": "libvirt-daemon-system", "qemu-system-x86_64": "qemu-system-x86",
            "qemu-img": "qemu-utils", "mkfs.ext4": "e2fsprogs", "nsenter": "util-linux", "setpriv": "util-linux"}


@dataclass(frozen=True)
class Result:
    check: str
    provider: str          # whose readiness it is about: nspawn, vagrant, or "all"
    verdict: str
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Context:
    workers: int = 1                # testbeds at once (pytest -n N: one per worker)
    libvirt_uri: str | None = None  # the VM provider's --libvirt-uri, else a private libvirtd


Check = Callable[[Host, Context, str], Iterator[Result]]
REGISTRY: list[tuple[str, tuple[str, ...], Check]] = []


def check(name: str, *providers: str) -> Callable[[Check], Check]:
    """Register a check for ``providers`` (it runs once per provider asked about, or once for all)."""
    def register(fn: Check) -> Check:
        REGISTRY.append((name, providers, fn))
        return fn
    return register


def _missing_tools(host: Host, tools: dict[str, str]) -> list[str]:
    return [tool for tool in tools if not host.which(tool)]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _size(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


@check("root")
def root(host: Host, ctx: Context, provider: str) -> Iterator[Result]:
    if host.euid() == 0:
        yield Result("root", provider, OK, "running as root")
    else:
        yield Result("root", provider, FAIL, "not root: namespaces, containers, VMs and debootstrap need it",
                     "run it as root: sudo .venv/bin/flatbed check")


@check("container tools", "nspawn")
def container_tools(host: Host, ctx: Context, provider: str) -> Iterator[Result]:
    missing = _missing_tools(host, CONTAINER_TOOLS)
    if not missing:
        yield Result("container tools", provider, OK, ", ".join(CONTAINER_TOOLS))
    else:
        packages = sorted({CONTAINER_TOOLS[t] for t in missing})
        yield Result("container tools", provider, FAIL, f"not installed: {', '.join(missing)}",
                     f"./run setup (or apt-get install {' '.join(packages)})")


@check("cgroup v2", "nspawn")
def cgroup2(host: Host, ctx: Context, provider: str) -> Iterator[Result]:
    if host.cgroup2():
        yield Result("cgroup v2", provider, OK, "a cgroup v2 hierarchy for the containers")
    else:
        yield Result("cgroup v2", provider, FAIL, "no cgroup v2 hierarchy (/sys/fs/cgroup or /sys/fs/cgroup/unified)",
                     "boot with systemd.unified_cgroup_hierarchy=1, or mount -t cgroup2 none /sys/fs/cgroup/unified")


@check("VM tools", "vagrant")
def vm_tools(host: Host, ctx: Context, provider: str) -> Iterator[Result]:
    missing = _missing_tools(host, VM_TOOLS)
    if not missing:
        yield Result("VM tools", provider, OK, ", ".join(VM_TOOLS))
    else:
        packages = sorted({VM_TOOLS[t] for t in missing})
        yield Result("VM tools", provider, FAIL, f"not installed: {', '.join(missing)}",
                     f"./run setup --provider vagrant (or apt-get install {' '.join(packages)})")


@check("vagrant", "vagrant")
def vagrant(host: Host, ctx: Context, provider: str) -> Iterator[Result]:
    version = host.vagrant_version()
    tested = ".".join(map(str, TESTED["vagrant"]))
    if version is None:
        yield Result("vagrant", provider, FAIL, "`vagrant --version` does not run",
                     "apt-get install vagrant (Debian 12's 2.3)")
    elif _version(version) < TESTED["vagrant"]:
        yield Result("vagrant", provider, WARN, f"Vagrant {version}, older than the {tested} the VM suite runs on",
                     "apt-get install vagrant from Debian 12 or later")
    else:
        yield Result("vagrant", provider, OK, f"Vagrant {version}")


@check("vagrant-libvirt", "vagrant")
def vagrant_libvirt(host: Host, ctx: Context, provider: str) -> Iterator[Result]:
    if host.vagrant_version() is None:
        yield Result("vagrant-libvirt", provider, SKIP, "vagrant does not run")
        return
    version = host.vagrant_plugins().get("vagrant-libvirt")
    tested = ".".join(map(str, TESTED["vagrant-libvirt"]))
    if version is None:
        yield Result("vagrant-libvirt", provider, FAIL, "the vagrant-libvirt plugin is not installed",
                     "apt-get install vagrant-libvirt (Debian 12's 0.11)")
    elif _version(version) < TESTED["vagrant-libvirt"]:
        yield Result("vagrant-libvirt", provider, WARN, f"vagrant-libvirt {version}, older than {tested}",
                     "apt-get install vagrant-libvirt from Debian 12 or later")
    else:
        yield Result("vagrant-libvirt", provider, OK, f"vagrant-libvirt {version}")


@check("libvirt", "vagrant")
def libvirt(host: Host, ctx: Context, provider: str) -> Iterator[Result]:
    which = ctx.libvirt_uri or "a private libvirtd, as each testbed starts"
    answer = host.libvirt(ctx.libvirt_uri)
    if answer.error:
        fix = (f"check that libvirtd serves {ctx.libvirt_uri} (virsh -c {ctx.libvirt_uri} version)"
               if ctx.libvirt_uri else "apt-get install libvirt-daemon-system qemu-system-x86; its log says why")
        yield Result("libvirt", provider, FAIL, f"does not answer: {answer.error}", fix)
    elif not {"kvm", "qemu"} & set(answer.domain_types):
        yield Result("libvirt", provider, FAIL, f"libvirt {answer.version} ({which}) offers no QEMU domain type",
                     "apt-get install qemu-system-x86")
    else:
        yield Result("libvirt", provider, OK, f"libvirt {answer.version} answers ({which}); "
                                              f"domain types: {', '.join(answer.domain_types)}")


@check("KVM", "vagrant")
def kvm(host: Host, ctx: Context, provider: str) -> Iterator[Result]:
    answer = host.kvm()
    if answer is None:
        yield Result("KVM", provider, WARN, "cannot tell yet: no guest kernel cached to boot under KVM",
                     "flatbed images (builds the images), then check again")
    elif answer.usable:
        yield Result("KVM", provider, OK, f"VMs run under KVM: {answer.reason}")
    else:
        yield Result("KVM", provider, WARN,
                     f"VMs will be slow: they run under TCG (emulation) because {answer.reason}; "
                     "a VM testbed takes 4-6 min to come up under TCG",
                     "a host whose KVM boots stock kernels (VT-x/AMD-V on in the firmware, kvm_intel or kvm_amd "
                     "loaded, /dev/kvm read-write for root); containers (--provider nspawn) need no KVM")


@check("nested virtualization", "vagrant")
def nested(host: Host, ctx: Context, provider: str) -> Iterator[Result]:
    name = "nested virtualization"
    answer = host.libvirt(ctx.libvirt_uri)
    if answer.error:
        yield Result(name, provider, SKIP, "libvirt does not answer (see libvirt)")
        return
    kvm_answer = host.kvm()
    virttype = "kvm" if kvm_answer is not None and kvm_answer.usable else "qemu"
    engine = "KVM" if virttype == "kvm" else "TCG"
    offered = answer.nested_cpu.get(virttype)
    if offered:
        yield Result(name, provider, OK, f"the VMs' CPU under {engine} offers svm/vmx: guests in the compute VMs "
                                         "run under nested KVM (8-16 s to userspace)")
        return
    if virttype == "kvm":
        param = host.kvm_nested_parameter()
        fix = ("enable nested KVM: options kvm_intel nested=1 (or kvm_amd nested=1) in /etc/modprobe.d/kvm.conf, "
               "then reload the module" + (f" (now nested={param})" if param else ""))
    else:
        fix = "a host with KVM (the VMs then get host-passthrough CPUs)"
    yield Result(name, provider, WARN, f"the VMs' CPU under {engine} offers neither svm nor vmx: guests in the compute "
                                       "VMs run under nested TCG (about 106 s to userspace)", fix)


@check("memory", *PROVIDERS)
def memory(host: Host, ctx: Context, provider: str) -> Iterator[Result]:
    need = NEEDS[provider].memory * ctx.workers
    have = host.mem_available()
    per = f"{ctx.workers} worker{'s' if ctx.workers > 1 else ''} x {_size(NEEDS[provider].memory)}"
    if have >= need:
        yield Result("memory", provider, OK, f"{_size(have)} available, {per} needed")
    else:
        yield Result("memory", provider, FAIL, f"{_size(have)} available, {per} = {_size(need)} needed",
                     "fewer workers (pytest -n), or stop what else runs here")


@check("disk", *PROVIDERS)
def disk(host: Host, ctx: Context, provider: str) -> Iterator[Result]:
    where = host.state_root()
    need = NEEDS[provider].disk * ctx.workers
    have = host.disk_free(where)
    if have >= need:
        yield Result("disk", provider, OK, f"{_size(have)} free for testbeds in {where}, {_size(need)} needed")
    else:
        yield Result("disk", provider, FAIL, f"{_size(have)} free in {where}, {_size(need)} needed "
                                             f"({ctx.workers} x {_size(NEEDS[provider].disk)})",
                     "free space there, or point FLATBED_STATE at a larger file system")


@check("image cache", *PROVIDERS)
def image_cache(host: Host, ctx: Context, provider: str) -> Iterator[Result]:
    kinds = IMAGE_KINDS[provider]
    cached = {i.kind for i in host.images() if i.complete}
    missing = [k for k in kinds if k not in cached]
    where = host.cache_root()
    if not missing:
        yield Result("image cache", provider, OK, f"{', '.join(kinds)} cached in {where}")
        return
    need = sum(IMAGE_SIZES[k] for k in missing)
    have = host.disk_free(where)
    if have < need:
        yield Result("image cache", provider, FAIL, f"{', '.join(missing)} not cached and only {_size(have)} free in "
                                                    f"{where} ({_size(need)} needed to build them)",
                     "free space there, or point FLATBED_CACHE at a larger file system")
    else:
        yield Result("image cache", provider, WARN, f"{', '.join(missing)} not cached in {where}: the first run builds "
                                                    "them (base: ~2 min from the Debian mirror)",
                     "flatbed images" + ("; the first VM testbed builds the box (~20 s)" if "box" in missing else ""))


def run(host: Host, ctx: Context, providers: tuple[str, ...]) -> list[Result]:
    """Every check that applies to ``providers``: once for all of them when it is not provider-specific."""
    results: list[Result] = []
    for _name, wanted, fn in REGISTRY:
        if not wanted:
            results += fn(host, ctx, "all")
            continue
        for provider in providers:
            if provider in wanted:
                results += fn(host, ctx, provider)
    return results
