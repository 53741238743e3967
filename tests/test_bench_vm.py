"""tools/bench_vm.py's pure parts: phases from timed progress lines, systemd's durations."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import bench_vm  # noqa: E402


def test_phases_from_the_bring_up_lines():
    lines = [(1.0, "vagrant: private libvirtd in namespace fb1-outside answering after 0.5 s"),
             (5.0, "vagrant: vagrant up (output in /x/vagrant-up.log)"),
             (80.0, "vagrant: compute-1: SSH ready (75 s)"), (90.0, "vagrant: controller-1: SSH ready (85 s)"),
             (91.0, "vagrant: vagrant up done in 86.0 s"), (95.0, "vagrant: 3 VMs up in 94.0 s"),
             (120.0, "compute-2: prepared in 25.0 s"), (118.0, "compute-1: prepared in 23.0 s"),
             (130.0, "controller-1: provisioned as controller in 35.0 s"),
             (138.0, "compute-1: provisioned as compute in 8.0 s"), (139.0, "compute-2: provisioned as compute in 9 s"),
             (140.0, "testbed fb123456 up in 135.0 s")]
    found = bench_vm.phases(lines)
    assert found["VM: first VM's SSH ready"] == 80.0 and found["VM: last VM's SSH ready"] == 90.0
    assert found["VM: computes prepared (the last)"] == 120.0
    assert found["VM: computes started (the last)"] == 139.0
    assert found["VM: controller provisioned"] == 130.0 and found["VM: testbed up"] == 140.0


def test_systemd_durations():
    assert bench_vm.seconds("1min 54.116s") == 114.116
    assert bench_vm.seconds("12.816s") == 12.816
    assert bench_vm.seconds("898ms") == 0.898
