"""stack/nova/flags.py: the flagfile in the document's form, Essex defaults, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

STACK = Path(__file__).resolve().parents[1] / "stack"
sys.path.insert(0, str(STACK))

from nova import flags  # noqa: E402

# The document's /etc/nova/nova.conf (the lines it shows), plus what provisioning adds per node.
DOCUMENT_CONF = """\
--public_interface=eth1
--fixed_range=10.0.0.0/24
--flat_interface=eth2
--flat_network_bridge=br100
--network_manager=nova.network.manager.FlatDHCPManager
--my_ip=192.168.56.200
--host=controller-1
"""


def test_document_flagfile() -> None:
    conf = flags.parse(DOCUMENT_CONF, "/etc/nova/nova.conf")
    assert (conf.public_interface, conf.fixed_range, conf.flat_interface, conf.flat_network_bridge) == (
        "eth1", "10.0.0.0/24", "eth2", "br100")
    assert conf.network_manager == "nova.network.manager.FlatDHCPManager"
    assert conf.my_ip == "192.168.56.200" and conf.host == "controller-1"


def test_essex_defaults() -> None:
    conf = flags.parse("--my_ip=192.168.56.200\n--host=controller-1\n")
    assert conf.dhcp_lease_time == 120
    assert conf.dhcpbridge == "/usr/bin/nova-dhcpbridge"
    assert conf.dhcpbridge_flagfile == "/etc/nova/nova-dhcpbridge.conf"
    assert conf.metadata_host == "192.168.56.200" and conf.metadata_port == 8775
    assert conf.routing_source_ip == "192.168.56.200"
    assert conf.dmz_cidr == "10.128.0.0/24"
    assert conf.state_path == "/var/lib/nova"
    assert conf.networks_path == "/var/lib/nova/networks"
    assert conf.instances_path == "/var/lib/nova/instances"
    assert conf.sqlite_path == "/var/lib/nova/nova.sqlite"
    assert conf.dhcp_domain == "novalocal"
    assert conf.dnsmasq_config_file == ""
    assert conf.force_dhcp_release is False and conf.allow_same_net_traffic is True
    assert conf.first_instance_id == 9 and conf.network_rpc_port == 8780
    assert conf.network_manager == "nova.network.manager.VlanManager"  # Essex: FlatDHCP must be set
    assert conf.fixed_range == "10.0.0.0/8" and conf.public_interface == "eth0"
    assert conf.flat_interface is None and conf.flat_network_bridge is None


def test_comments_blank_lines_and_types() -> None:
    conf = flags.parse("# nova.conf\n\n  --dhcp_lease_time=86400  \n--force_dhcp_release=True\n"
                       "--noallow_same_net_traffic\n--verbose\n--my_ip=10.9.9.9\n--host=h\n")
    assert conf.dhcp_lease_time == 86400
    assert conf.force_dhcp_release is True and conf.allow_same_net_traffic is False and conf.verbose is True


def test_state_path_moves_derived_paths() -> None:
    conf = flags.parse("--state_path=/tmp/st\n--my_ip=10.1.1.1\n--host=h\n--metadata_host=$my_ip\n")
    assert conf.networks_path == "/tmp/st/networks" and conf.sqlite_path == "/tmp/st/nova.sqlite"
    assert conf.metadata_host == "10.1.1.1"


def test_later_line_wins() -> None:
    conf = flags.parse("--fixed_range=10.0.0.0/8\n--fixed_range=10.0.0.0/24\n--host=h\n--my_ip=1.2.3.4")
    assert conf.fixed_range == "10.0.0.0/24"


@pytest.mark.parametrize(("text", "message"), [
    ("--public_interface=eth1\n# c\n--foo=1\n", "/etc/nova/nova.conf:3: unknown flag --foo"),
    ("public_interface=eth1\n",
     "/etc/nova/nova.conf:1: malformed line 'public_interface=eth1' (expected --flag=value)"),
    ("\n--dhcp_lease_time=2m\n", "/etc/nova/nova.conf:2: --dhcp_lease_time must be an integer, not '2m'"),
    ("--force_dhcp_release=yes\n",
     "/etc/nova/nova.conf:1: --force_dhcp_release must be true or false, not 'yes'"),
    ("--fixed_range\n", "/etc/nova/nova.conf:1: --fixed_range needs a value (--fixed_range=...)"),
    ("--nofixed_range\n", "/etc/nova/nova.conf:1: unknown flag --nofixed_range"),
])
def test_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(flags.FlagError) as error:
        flags.parse(text, "/etc/nova/nova.conf")
    assert str(error.value) == message


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(flags.FlagError) as error:
        flags.load(str(tmp_path / "nope.conf"))
    assert str(error.value) == f"{tmp_path}/nope.conf: cannot read flagfile: No such file or directory"


def test_flagfile_from_argv() -> None:
    assert flags.flagfile_from_argv(["--flagfile=/x.conf", "fixed", "list"]) == ("/x.conf", ["fixed", "list"])
    assert flags.flagfile_from_argv([]) == ("/etc/nova/nova.conf", [])


@pytest.mark.parametrize("binary", ["nova-network", "nova-manage"])
def test_binaries_exit_nonzero_with_the_line(tmp_path: Path, binary: str) -> None:
    """Debian's own python3 runs the scripts; a bad flagfile is one stderr line and exit 1."""
    conf = tmp_path / "nova.conf"
    conf.write_text("--public_interface=eth1\n--fixed_range=10.0.0.0/24\n--foo=bar\n")
    args = ["network", "list"] if binary == "nova-manage" else []
    result = subprocess.run(["/usr/bin/python3", str(STACK / "bin" / binary), f"--flagfile={conf}", *args],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr == f"{conf}:3: unknown flag --foo\n"


def test_dhcpbridge_reads_flagfile_env(tmp_path: Path) -> None:
    conf = tmp_path / "nova.conf"
    conf.write_text("--bogus\n")
    result = subprocess.run(["/usr/bin/python3", str(STACK / "bin" / "nova-dhcpbridge"), "old", "m", "i"],
                            env={"FLAGFILE": str(conf)}, capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (1, f"{conf}:1: unknown flag --bogus\n")
