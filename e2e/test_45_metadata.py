"""The EC2 metadata service (reference §10, §12.1): what a guest gets from 169.254.169.254.

Steps:
- ``nova keypair-add`` on the controller (nova-api generates the pair, prints the private key);
- boot a guest with ``--key-name`` and a ``--user-data`` script;
- its console: metadata at the first try with its own iid, no public-keys 404 (a key exists),
  the user-data script ran, cloud-final's ``local-ipv4`` is its fixed IP;
- SSH into it with the key (cloud-setup installed it for cirros; paramiko through the controller)
  and read the tree from inside:
  versions at ``/``, the Essex listing, ``public-keys/`` → ``0=<name>``, the key itself, hostname
  ``<name>.novalocal``, the user data;
- a source that is no instance's fixed IP (the controller, the outside host) gets 404.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest

from flatbed.checks.console import console, wait_for_console
from flatbed.checks.expect import METADATA_IP, metadata_target
from flatbed.checks.guestshell import GuestShell, guest_shell
from flatbed.checks.identity import identity_of, rule_address
from flatbed.checks.keypairs import KeyPair, keypair_add, keypair_delete, private_key
from flatbed.checks.timeouts import CLOUD_FINAL_TIMEOUT
from flatbed.cloud import Guest
from flatbed.node import Node
from flatbed.testbed import Testbed
from flatbed_fixtures.guests import BootedGuests

pytestmark = pytest.mark.usefixtures("metadata_dnat")

USER_DATA = "#!/bin/sh\necho flatbed-user-data-ran-as-$(id -un)\n"
VERSIONS = ["1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15", "2008-02-01",
            "2008-09-01", "2009-04-04"]
META_DATA = ["ami-id", "ami-launch-index", "ami-manifest-path", "block-device-mapping/", "hostname",
             "instance-action", "instance-id", "instance-type", "local-hostname", "local-ipv4", "placement/",
             "public-hostname", "public-ipv4", "public-keys/", "reservation-id", "security-groups"]


@pytest.fixture(scope="module")
def keypair(controller: Node) -> Iterator[KeyPair]:
    key = keypair_add(controller, "flatbed-key")
    yield key
    keypair_delete(controller, key)


@pytest.fixture(scope="module")
def keyed(guests: BootedGuests, keypair: KeyPair, controller: Node) -> Guest:
    controller.write_file("/root/user-data.sh", USER_DATA)
    guest = guests.boot("keyed", key_name=keypair.name, user_data="/root/user-data.sh")
    wait_for_console(guest, r"(?m)^  local-ipv4 : .*$", timeout=CLOUD_FINAL_TIMEOUT, what="cloud-final's lines")
    return guest


@pytest.fixture(scope="module")
def shell(testbed: Testbed, keyed: Guest, keypair: KeyPair) -> Iterator[GuestShell]:
    """Logged in as cirros with the key pair's private key (no password)."""
    with guest_shell(testbed, keyed, pkey=private_key(testbed.controller, keypair)) as session:
        yield session


def metadata(shell: GuestShell, path: str) -> str:
    """GET http://169.254.169.254<path> from inside the guest (busybox wget), as cirros' scripts do."""
    status, out, err = shell.run([f"wget -q -O - {shlex.quote(f'http://{METADATA_IP}{path}')}"])
    assert status == 0, f"wget {path} in {shell.guest.name} failed: {err.strip()}"
    return out


def test_keypair_is_listed(controller: Node, keypair: KeyPair) -> None:
    listing = controller.check(["nova", "keypair-list"])
    assert any(line.startswith(f"| {keypair.name} ") for line in listing.splitlines())
    assert keypair.public_key.startswith("ssh-rsa ")


def test_console_with_a_key(keyed: Guest) -> None:
    text = console(keyed)
    assert "successful after 1/30 tries: up " in text and f"iid={identity_of(keyed).ec2_id}\n" in text
    assert f"failed to get http://{METADATA_IP}/latest/meta-data/public-keys" not in text
    assert f"  local-ipv4 : {rule_address(keyed)}\n" in text


def test_user_data_script_ran(keyed: Guest) -> None:
    wait_for_console(keyed, r"(?m)^flatbed-user-data-ran-as-root$", timeout=CLOUD_FINAL_TIMEOUT,
                     what="the user-data script's output")


def test_key_installed_and_login_works(shell: GuestShell, keypair: KeyPair) -> None:
    assert shell.check(["id", "-un"]).strip() == "cirros"
    keys = shell.check(["cat ~/.ssh/authorized_keys"]).splitlines()
    assert [k.split()[:2] for k in keys] == [keypair.public_key.split()[:2]]


def test_tree_seen_from_the_guest(shell: GuestShell, keyed: Guest, keypair: KeyPair) -> None:
    assert metadata(shell, "/").splitlines() == VERSIONS
    assert metadata(shell, "/latest/meta-data/").splitlines() == META_DATA
    assert metadata(shell, "/2009-04-04/meta-data/instance-id") == identity_of(keyed).ec2_id
    assert metadata(shell, "/latest/meta-data/local-ipv4") == rule_address(keyed)
    assert metadata(shell, "/latest/meta-data/hostname") == "keyed.novalocal"
    assert metadata(shell, "/latest/meta-data/public-ipv4") == ""
    assert metadata(shell, "/latest/meta-data/instance-type") == "m1.tiny"
    assert metadata(shell, "/latest/meta-data/placement/availability-zone") == "nova"
    assert metadata(shell, "/latest/meta-data/public-keys/") == f"0={keypair.name}"
    served = metadata(shell, "/latest/meta-data/public-keys/0/openssh-key")
    assert served.split()[:2] == keypair.public_key.split()[:2]
    assert metadata(shell, "/2009-04-04/user-data") == USER_DATA


@pytest.mark.parametrize("node_name", ["controller", "outside"])
def test_unknown_sources_get_404(testbed: Testbed, node_name: str) -> None:
    """Neither the controller's nor the outside host's address is a fixed IP of an instance."""
    node = testbed.controller if node_name == "controller" else testbed.node(testbed.topology.outside.name)
    target = metadata_target(testbed.topology)
    code = node.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                     f"http://{target}/latest/meta-data/instance-id"], timeout=20)
    assert code.stdout == "404", code.stderr
    versions = node.run(["curl", "-s", f"http://{target}/"], timeout=20)
    assert versions.stdout.splitlines() == VERSIONS
