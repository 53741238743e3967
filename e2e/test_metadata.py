"""The EC2 metadata service (reference §10, §12.1): what a guest gets from 169.254.169.254.

Steps:
- ``nova keypair-add`` on the controller (nova-api generates the pair, prints the private key);
- boot a guest with ``--key-name`` and a ``--user-data`` script;
- its console: metadata at the first try with its own iid, no public-keys 404 (a key exists),
  the user-data script ran, cloud-final's ``local-ipv4`` is its fixed IP;
- SSH into it with the key (cloud-setup installed it for cirros) and read the tree from inside:
  versions at ``/``, the Essex listing, ``public-keys/`` → ``0=<name>``, the key itself, hostname
  ``<name>.novalocal``, the user data;
- a source that is no instance's fixed IP (the controller, the outside host) gets 404.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest

from fixtures.guests import Guest, GuestManager
from fixtures.metadata import METADATA_IP, KeyPair, keypair_add, keypair_delete, metadata_target, ssh, wait_for_ssh
from flatbed.checks.timeouts import CLOUD_FINAL_TIMEOUT
from flatbed.node import Node

pytestmark = pytest.mark.usefixtures("metadata_dnat")

USER_DATA = "#!/bin/sh\necho flatbed-user-data-ran-as-$(id -un)\n"
VERSIONS = ["1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15", "2008-02-01",
            "2008-09-01", "2009-04-04"]
META_DATA = ["ami-id", "ami-launch-index", "ami-manifest-path", "block-device-mapping/", "hostname",
             "instance-action", "instance-id", "instance-type", "local-hostname", "local-ipv4", "mpi/", "placement/",
             "public-hostname", "public-ipv4", "public-keys/", "reservation-id", "security-groups"]


@pytest.fixture(scope="module")
def keypair(controller: Node) -> Iterator[KeyPair]:
    key = keypair_add(controller, "flatbed-key")
    yield key
    keypair_delete(controller, key)


@pytest.fixture(scope="module")
def keyed(guests: GuestManager, keypair: KeyPair, controller: Node) -> Guest:
    controller.write_file("/root/user-data.sh", USER_DATA)
    guest = guests.boot("keyed", key_name=keypair.name, user_data="/root/user-data.sh")
    guest.wait_for_console(r"(?m)^  local-ipv4 : .*$", timeout=CLOUD_FINAL_TIMEOUT, what="cloud-final's lines")
    return guest


def metadata(controller: Node, key: KeyPair, guest: Guest, path: str) -> str:
    """GET http://169.254.169.254<path> from inside the guest (busybox wget), as cirros' scripts do."""
    result = ssh(controller, key, guest.ip, f"wget -q -O - {shlex.quote(f'http://{METADATA_IP}{path}')}")
    assert result.ok, f"wget {path} in {guest.name} failed: {result.stderr.strip()}"
    return result.stdout


def test_keypair_is_listed(controller: Node, keypair: KeyPair) -> None:
    listing = controller.check(["nova", "keypair-list"])
    assert any(line.startswith(f"| {keypair.name} ") for line in listing.splitlines())
    assert keypair.public_key.startswith("ssh-rsa ")


def test_console_with_a_key(keyed: Guest) -> None:
    console = keyed.console()
    assert "successful after 1/30 tries: up " in console and f"iid={keyed.ec2_id}\n" in console
    assert "failed to get http://169.254.169.254/latest/meta-data/public-keys" not in console
    assert f"  local-ipv4 : {keyed.ip}\n" in console


def test_user_data_script_ran(keyed: Guest) -> None:
    keyed.wait_for_console(r"(?m)^flatbed-user-data-ran-as-root$", timeout=CLOUD_FINAL_TIMEOUT,
                           what="the user-data script's output")


def test_key_installed_and_login_works(keyed: Guest, keypair: KeyPair, controller: Node) -> None:
    wait_for_ssh(controller, keypair, keyed.ip)
    result = ssh(controller, keypair, keyed.ip, "id -un; cat ~/.ssh/authorized_keys")
    assert result.ok, result.stderr
    user, *keys = result.stdout.splitlines()
    assert user == "cirros"
    assert [k.split()[:2] for k in keys] == [keypair.public_key.split()[:2]]


def test_tree_seen_from_the_guest(keyed: Guest, keypair: KeyPair, controller: Node) -> None:
    wait_for_ssh(controller, keypair, keyed.ip)
    assert metadata(controller, keypair, keyed, "/").splitlines() == VERSIONS
    assert metadata(controller, keypair, keyed, "/latest/meta-data/").splitlines() == META_DATA
    assert metadata(controller, keypair, keyed, "/2009-04-04/meta-data/instance-id") == keyed.ec2_id
    assert metadata(controller, keypair, keyed, "/latest/meta-data/local-ipv4") == keyed.ip
    assert metadata(controller, keypair, keyed, "/latest/meta-data/hostname") == "keyed.novalocal"
    assert metadata(controller, keypair, keyed, "/latest/meta-data/public-ipv4") == ""
    assert metadata(controller, keypair, keyed, "/latest/meta-data/instance-type") == "m1.tiny"
    assert metadata(controller, keypair, keyed, "/latest/meta-data/placement/availability-zone") == "nova"
    assert metadata(controller, keypair, keyed, "/latest/meta-data/public-keys/") == f"0={keypair.name}"
    served = metadata(controller, keypair, keyed, "/latest/meta-data/public-keys/0/openssh-key")
    assert served.split()[:2] == keypair.public_key.split()[:2]
    assert metadata(controller, keypair, keyed, "/2009-04-04/user-data") == USER_DATA


@pytest.mark.parametrize("node_name", ["controller", "outside"])
def test_unknown_sources_get_404(testbed, node_name: str) -> None:
    """Neither the controller's nor the outside host's address is a fixed IP of an instance."""
    node = testbed.controller if node_name == "controller" else testbed.node(testbed.topology.outside.name)
    target = metadata_target(testbed)
    code = node.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                     f"http://{target}/latest/meta-data/instance-id"], timeout=20)
    assert code.stdout == "404", code.stderr
    versions = node.run(["curl", "-s", f"http://{target}/"], timeout=20)
    assert versions.stdout.splitlines() == VERSIONS
