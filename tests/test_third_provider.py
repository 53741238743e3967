"""A third provider is one package (``tests/toyprovider``): registered, and nothing else edited,
``flatbed list``, ``status``, ``leaks`` and ``clean`` handle its testbeds and its run-tagged
resources. And the structure that makes it so: ``clean``/``leftovers`` name no provider, and no
module imports a provider package's private names."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

from toyprovider.harness import flatbed, toy_testbed

from flatbed import providers, state

FLATBED = Path(__file__).resolve().parents[1] / "flatbed"



def test_list_and_status_show_a_toy_testbed(toy, capsys):
    st = toy_testbed()
    rc, out = flatbed(capsys, "list")
    assert rc == 0 and f"{st.run_id}  toy      up" in out
    rc, out = flatbed(capsys, "status")
    assert f"testbed {st.run_id}" in out and f"toy: 4 toy machines under {toy}" in out, out
    assert "DOWN" in out and rc == 1  # its nodes run nothing: unhealthy, said in the table


def test_leaks_lists_its_tagged_resources_and_down_removes_them(toy, capsys):
    st = toy_testbed()
    rc, out = flatbed(capsys, "leaks")
    assert rc == 1
    assert f"toy machine {toy / (st.run_id + '-controller-1')} (testbed {st.run_id} is up)" in out, out
    assert f"state file {st.dir / 'state.json'} (up)" in out
    rc, out = flatbed(capsys, "down")
    assert rc == 0 and f"removed toy machine {toy / (st.run_id + '-compute-2')}" in out
    assert flatbed(capsys, "leaks") == (0, "no flatbed resources on this host\n")


def test_clean_removes_a_killed_bring_up_and_orphans_and_keeps_one_that_is_up(toy, capsys):
    kept = toy_testbed()
    killed = toy_testbed(status="creating", owner="1:0")  # its creating process is gone
    orphan = "fb0000ee"
    (toy / f"{orphan}-compute-1").mkdir()  # tagged, and no state file says what it is
    (toy / "fbdecoy-compute-1").mkdir()    # not a run tag: never touched

    rc, out = flatbed(capsys, "clean", "--dry-run")
    assert f"would remove {orphan} (tagged resources without a state file):" in out, out
    assert (toy / f"{orphan}-compute-1").exists()

    rc, out = flatbed(capsys, "clean")
    assert rc == 0
    assert f"removed {killed.run_id} (bring-up interrupted (its process is gone)):" in out, out
    assert f"  toy machine {toy / (killed.run_id + '-outside')}" in out
    assert f"removed {orphan} (tagged resources without a state file):" in out
    assert f"kept {kept.run_id}: up with every node running; `flatbed down` removes it" in out
    assert sorted(p.name for p in toy.iterdir()) == sorted(
        ["fbdecoy-compute-1"] + [f"{kept.run_id}-{name}" for name in kept.record.nodes])
    rc, out = flatbed(capsys, "leaks")
    assert killed.run_id not in out and orphan not in out and kept.run_id in out


def test_clean_keeps_a_testbed_being_created(toy, capsys):
    creator = subprocess.Popen(["sleep", "60"])  # another live process is bringing it up
    try:
        st = toy_testbed(status="creating", owner=state.process_identity(creator.pid))
        rc, out = flatbed(capsys, "clean")
        assert re.search(rf"kept {st.run_id}: in use by sleep \(pid {creator.pid}\) since \d\d:\d\d; "
                         r"--force to remove it anyway", out), out
        assert (toy / f"{st.run_id}-controller-1").is_dir()
    finally:
        creator.kill()
        creator.wait()


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text())
    return [(node.module or "", [a.name for a in node.names]) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)] + \
           [(a.name, []) for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]


def test_clean_and_leftovers_name_no_provider():
    for module in ("clean.py", "leftovers.py"):
        text = (FLATBED / module).read_text()
        for name in providers.PREFERENCE:
            assert name not in text, f"{module} names provider {name}"
        assert not [m for m, _ in _imports(FLATBED / module) if m.startswith("flatbed.providers.")], module


def test_nothing_outside_a_provider_package_imports_its_private_names():
    packages = [p for p in (FLATBED / "providers").iterdir() if (p / "__init__.py").exists()]
    for path in FLATBED.rglob("*.py"):
        for module, names in _imports(path):
            for package in packages:
                owner = f"flatbed.providers.{package.name}"
                if (module == owner or module.startswith(owner + ".")) and not path.is_relative_to(package):
                    assert not [n for n in names if n.startswith("_")], f"{path} imports {names} from {module}"


def test_clean_removes_a_testbed_whose_state_file_it_cannot_read(toy, capsys):
    st = toy_testbed()
    (st.dir / "state.json").write_text('{"schema": 2, "run_id": "' + st.run_id + '", "provider": "toy"}')
    rc, out = flatbed(capsys, "--testbed", st.run_id, "status")
    assert rc == 2 and out.count("\n") == 1 and "`flatbed clean` removes the testbed" in out, out
    rc, out = flatbed(capsys, "list")
    assert f"{st.run_id}  ?        unreadable" in out
    rc, out = flatbed(capsys, "clean")
    assert f"removed {st.run_id} (unreadable state file (" in out, out
    assert f"  toy machine {toy / (st.run_id + '-compute-1')}" in out
    assert flatbed(capsys, "leaks") == (0, "no flatbed resources on this host\n")


def test_clean_removes_a_testbed_whose_nodes_stopped(toy, capsys):
    st = toy_testbed()
    (toy / f"{st.run_id}-compute-2" / "role").unlink()
    (toy / f"{st.run_id}-compute-2").rmdir()  # the machine went away behind flatbed's back
    rc, out = flatbed(capsys, "clean")
    assert f"removed {st.run_id} (recorded up but its nodes are not running):" in out, out
    assert flatbed(capsys, "leaks") == (0, "no flatbed resources on this host\n")
