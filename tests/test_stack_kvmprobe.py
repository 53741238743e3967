"""nova-compute's libvirt_type choice (stack/nova/virt/libvirt/kvmprobe.py), with fake QEMUs."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "stack"))

from nova.virt.libvirt import kvmprobe  # noqa: E402


def fake_qemu(tmp_path: Path, body: str, name: str = "qemu") -> str:
    script = tmp_path / name
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def setup(tmp_path: Path, image: tuple[str, ...] = ("kernel", "ramdisk", "image.json")) -> dict:
    base = tmp_path / "instances" / "_base" / "abc"
    base.mkdir(parents=True)
    for name in image:
        (base / name).write_text("x")
    device = tmp_path / "kvm"
    device.write_text("")
    return {"instances_path": str(tmp_path / "instances"), "kvm_device": str(device),
            "result": tmp_path / "run" / "libvirt_type.json", "probe_dirs": (tmp_path / "no-probe-kernel",)}


BOOTS = 'echo "[    0.9] Run /init as init process"; sleep 30'


def test_kvm_when_the_kernel_reaches_userspace(tmp_path: Path) -> None:
    env = setup(tmp_path)
    choice = kvmprobe.decide("", qemu=fake_qemu(tmp_path, BOOTS), **env)
    assert choice.libvirt_type == "kvm" and "reached userspace under KVM" in choice.reason
    assert kvmprobe.recorded(env["result"]) == choice


def test_a_slow_boot_that_keeps_printing_is_kvm(tmp_path: Path) -> None:
    """Judged by progress: each line within the stall bound, the whole boot well beyond it."""
    slow = fake_qemu(tmp_path, 'for i in 1 2 3 4 5 6; do echo "[ $i ] line"; sleep 0.3; done; '
                               'echo "Run /init as init process"; sleep 30')
    choice = kvmprobe.decide("", qemu=slow, stall=1.0, **setup(tmp_path))
    assert choice.libvirt_type == "kvm" and choice.seconds > 1.0


def test_qemu_when_the_kernel_hangs_exits_or_kvm_fails(tmp_path: Path) -> None:
    env = setup(tmp_path)
    hangs = fake_qemu(tmp_path, "echo 'Decompressing Linux... Parsing ELF... done.'; sleep 30", "hangs")
    choice = kvmprobe.decide("", qemu=hangs, stall=0.5, **env)
    assert choice.libvirt_type == "qemu" and "no console output for 0.5 s" in choice.reason and choice.fell_back
    env["result"].unlink()
    dies = fake_qemu(tmp_path, "echo 'qemu: could not load kernel'; exit 1", "dies")
    assert "QEMU exited (1)" in kvmprobe.decide("", qemu=dies, **env).reason
    env["result"].unlink()
    fails = fake_qemu(tmp_path, "echo 'KVM internal error. Suberror: 1'; sleep 30", "fails")
    assert "KVM internal error" in kvmprobe.decide("", qemu=fails, **env).reason
    env["result"].unlink()
    chatty = fake_qemu(tmp_path, "while :; do echo 'watchdog: BUG: soft lockup'; sleep 0.1; done", "chatty")
    assert "within 1 s" in kvmprobe.decide("", qemu=chatty, limit=1.0, **env).reason


def test_facts_before_any_probe(tmp_path: Path) -> None:
    env = setup(tmp_path)
    never = fake_qemu(tmp_path, "exit 3")  # any probe would make it qemu with "exited (3)"
    assert kvmprobe.decide("kvm", qemu=never, **env) == kvmprobe.Choice("kvm", "--libvirt_type in nova.conf", "flag")
    env["result"].unlink()
    no_kvm = {**env, "kvm_device": str(tmp_path / "none")}
    choice = kvmprobe.decide("", qemu=never, **no_kvm)
    assert choice.reason.endswith("/none is missing or not accessible") and not choice.fell_back


def test_once_per_boot_and_asked_again_when_undecided(tmp_path: Path) -> None:
    env = setup(tmp_path, image=())
    booted = fake_qemu(tmp_path, BOOTS)
    assert kvmprobe.decide("", qemu=booted, **env).libvirt_type == ""      # nothing to boot yet
    (Path(env["instances_path"]) / "_base" / "abc" / "kernel").write_text("x")
    for name in ("ramdisk", "image.json"):
        (Path(env["instances_path"]) / "_base" / "abc" / name).write_text("x")
    assert kvmprobe.decide("", qemu=booted, **env).libvirt_type == "kvm"   # the first instance's image
    never = fake_qemu(tmp_path, "exit 3", "never")
    assert kvmprobe.decide("", qemu=never, **env).libvirt_type == "kvm"    # recorded: not probed again


def test_what_is_booted(tmp_path: Path) -> None:
    env = setup(tmp_path, image=("disk", "image.json"))
    what, args = kvmprobe.probe_boot(env["instances_path"], env["probe_dirs"])
    assert "disk image" in what and "-snapshot" in args and "-kernel" not in args
    own = tmp_path / "probe-kernel"
    own.mkdir()
    (own / "vmlinuz").write_text("k")
    (own / "initrd.img").write_text("i")
    what, args = kvmprobe.probe_boot(env["instances_path"], (own,))
    assert "the node's kernel" in what and args[args.index("-kernel") + 1] == str(own / "vmlinuz")
    assert kvmprobe.probe_boot(str(tmp_path / "empty"), env["probe_dirs"]) is None


def test_flatbed_reads_the_choice_where_the_stack_writes_it() -> None:
    from flatbed import provisioning

    assert provisioning.KVM_CHOICE == str(kvmprobe.RESULT)
    line = provisioning.describe_kvm_choice({"libvirt_type": "qemu", "reason": "hung", "source": "probe"})
    assert line.startswith("WARNING: guests run under TCG")
    assert "WARNING" not in provisioning.describe_kvm_choice({"libvirt_type": "qemu", "reason": "no /dev/kvm",
                                                              "source": "device"})
