"""flatbed.checks.cirros against console logs of each cirros generation.

The consoles are written from the reference (§12) and the cirros sources of each tag (udhcpc's
wording per busybox version, cirros-ds's ec2 datasource, cirros-status's blocks, buildroot's and
cirros' dropbear scripts, dhcpcd's log lines), with the document's guest: 10.0.0.2, lease time
120 s, i-00000009. Every fact is also fed a wrong value, which must fail.
"""

from __future__ import annotations

import pytest

from flatbed.checks.cirros import (
    Expected,
    Facts,
    Mismatch,
    check_console,
    first_lease,
    generation_of,
    host_keys,
    leases,
    read_facts,
)

EXPECTED = Expected(ip="10.0.0.2", lease_time=120, ec2_id="i-00000009")

# --- the network part, per DHCP client ----------------------------------------------------------

UDHCPC_118 = """Starting network...
udhcpc (v1.18.5) started
Sending discover...
Sending select for {ip}...
Lease of {ip} obtained, lease time {seconds}
deleting routers
route: SIOCDELRT: No such process
adding dns 10.0.0.1
"""
UDHCPC_123 = """Starting network...
udhcpc (v1.23.2) started
Sending discover...
Sending select for {ip}...
Lease of {ip} obtained, lease time {seconds}
route: SIOCADDRT: File exists
WARN: failed: route add -net "0.0.0.0/0" gw "10.0.0.1"
"""
UDHCPC_129 = """Starting network...
udhcpc: started, v1.29.3
udhcpc: sending discover
udhcpc: sending select for {ip}
udhcpc: lease of {ip} obtained, lease time {seconds}
route: SIOCADDRT: File exists
WARN: failed: route add -net "0.0.0.0/0" gw "10.0.0.1"
"""
UDHCPC_135 = """Starting network...
udhcpc: started, v1.35.0
udhcpc: broadcasting discover
udhcpc: broadcasting select for {ip}, server 10.0.0.1
udhcpc: lease of {ip} obtained from 10.0.0.1, lease time {seconds}
deleting routers
route: SIOCDELRT: No such process
adding dns 10.0.0.1
"""
DHCPCD = """Starting network: dhcpcd-9.4.1 starting
dev: loaded udev
DUID 00:01:00:01:2c:a3:5e:10:fa:16:3e:2c:e8:ec
eth0: IAID 3e:2c:e8:ec
eth0: adding address fe80::f816:3eff:fe2c:e8ec
eth0: soliciting an IPv6 router
eth0: soliciting a DHCP lease
eth0: offered {ip} from 10.0.0.1
eth0: leased {ip} for {seconds} seconds
eth0: adding route to 10.0.0.0/24
eth0: adding default route via 10.0.0.1
forked to background, child pid 275
OK
"""

# --- the rest of the boot, per init system --------------------------------------------------------

CLOUD_SETUP = """cloud-setup: checking http://169.254.169.254/2009-04-04/meta-data/instance-id
cloud-setup: successful after {tries}/30 tries: up 4.74. iid={iid}
wget: server returned error: HTTP/1.1 404 Not Found
failed to get http://169.254.169.254/latest/meta-data/public-keys
Starting dropbear sshd: {dropbear}OK
===== cloud-final: system completely up in 6.82 seconds ====
  instance-id: {reported}
  public-ipv4: {space}
  local-ipv4 : {ip}
cloud-userdata: user data not a script


login as 'cirros' user. default password: 'cubswin:)'. use 'sudo' for root.
cirros login: {space}
"""
EC2_DATASOURCE = """cirros-ds 'net' up at 4.12
checking http://169.254.169.254/2009-04-04/instance-id
successful after {tries}/20 tries: up 4.33. iid={iid}
failed to get http://169.254.169.254/2009-04-04/meta-data/public-keys
warning: no ec2 metadata for public-keys
"""
BUILDROOT_DROPBEAR = "Starting dropbear sshd: {dropbear}OK\n"
CIRROS_DROPBEAR = "Top of dropbear init script\nStarting dropbear sshd: OK\n"
STATUS = """=== system information ===
Platform: OpenStack Foundation OpenStack Nova
Container: none
Arch: x86_64
RAM Size: 491MB
{keys}=== network info ===
if-info: lo,up,127.0.0.1,8,,
if-info: eth0,up,{ip},24,fe80::f816:3eff:fe2c:e8ec/64,
ip-route:default via 10.0.0.1 dev eth0
ip-route:10.0.0.0/24 dev eth0  src {ip}
=== datasource: ec2 net ===
instance-id: {reported}
name: N/A
availability-zone: nova
local-hostname: cirros.novalocal
launch-index: 0
=== cirros: current={version} uptime=9.48 ===
  ____               ____  ____
 / __/ __ ____ ____ / __ \\/ __/
/ /__ / // __// __// /_/ /\\ \\
\\___//_//_/  /_/   \\____/___/
   http://cirros-cloud.net


login as 'cirros' user. default password: 'gocubsgo'. use 'sudo' for root.
cirros login: {space}
"""
KEYS_BLOCK = """=== sshd host keys ===
-----BEGIN SSH HOST KEY KEYS-----
{keys}-----END SSH HOST KEY KEYS-----
"""
KEYS = ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 root@cirros\n"
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAI root@cirros\n")

# generation -> (version printed, the console's parts in boot order)
CONSOLES = {
    "0.3.0": (None, UDHCPC_118 + CLOUD_SETUP),
    "flatbed": (None, UDHCPC_135 + CLOUD_SETUP),
    "0.3.1": ("0.3.2", UDHCPC_118.replace("1.18.5", "1.20.1") + EC2_DATASOURCE + BUILDROOT_DROPBEAR
              + STATUS.replace("{keys}", "")),
    "0.3.5": ("0.4.0", UDHCPC_123 + EC2_DATASOURCE + CIRROS_DROPBEAR + STATUS.replace("{keys}", KEYS_BLOCK)),
    "0.5": ("0.5.2", UDHCPC_129 + EC2_DATASOURCE + CIRROS_DROPBEAR + STATUS.replace("{keys}", KEYS_BLOCK)),
    "0.6": ("0.6.2", DHCPCD + EC2_DATASOURCE + CIRROS_DROPBEAR + STATUS.replace("{keys}", KEYS_BLOCK)),
}
GENERATION_OF = {"0.3.0": "0.3.0", "flatbed": "0.3.0", "0.3.1": "0.3.1", "0.3.5": "0.3.5", "0.5": "0.5", "0.6": "0.6"}


def console(name: str, *, ip: str = "10.0.0.2", seconds: int = 120, tries: int = 1, iid: str = "i-00000009",
            reported: str = "i-00000009", keys: str = KEYS,
            dropbear: str = "generating rsa key... generating dsa key... ") -> str:
    version, text = CONSOLES[name]
    text = text.replace("{keys}", keys)
    # {space}: the trailing blank of "  public-ipv4: " and of the login prompt.
    return text.format(ip=ip, seconds=seconds, tries=tries, iid=iid, reported=reported, version=version, space=" ",
                       dropbear=dropbear)


@pytest.mark.parametrize("name", CONSOLES)
def test_each_generation_shows_the_expected_facts(name: str) -> None:
    facts = check_console(console(name), EXPECTED)
    assert isinstance(facts, Facts), str(facts)
    assert facts.generation == GENERATION_OF[name]
    assert facts.version == CONSOLES[name][0]
    assert (facts.lease_ip, facts.lease_time, facts.metadata_tries) == ("10.0.0.2", 120, 1)
    assert facts.metadata_iid == facts.reported_iid == "i-00000009"
    assert facts.host_keys == 2


def test_serial_line_ends_are_read_as_lines() -> None:
    assert isinstance(check_console(console("0.5").replace("\n", "\r\n"), EXPECTED), Facts)


@pytest.mark.parametrize(("version", "generation"), [
    ("0.3.1", "0.3.1"), ("0.3.4", "0.3.1"), ("0.3.5", "0.3.5"), ("0.3.6", "0.3.5"), ("0.4.0", "0.3.5"),
    ("0.5.0", "0.5"), ("0.5.3", "0.5"), ("0.6.0", "0.6"), ("0.6.3", "0.6"), ("0.7.1", "0.6"),
])
def test_the_version_line_chooses_the_generation(version: str, generation: str) -> None:
    text = console("0.6").replace("current=0.6.2", f"current={version}")
    chosen = generation_of(text)
    assert chosen is not None and chosen.name == generation


def test_a_version_line_with_latest_is_read() -> None:
    text = console("0.5").replace("current=0.5.2 uptime", "current=0.5.2 latest=0.6.3 uptime")
    facts = read_facts(text)
    assert isinstance(facts, Facts) and facts.version == "0.5.2"


def test_no_generation_before_either_marker() -> None:
    early = console("0.6").split("=== system information ===")[0]
    assert generation_of(early) is None
    result = check_console(early, EXPECTED)
    assert isinstance(result, Mismatch) and result.fact == "generation" and not result.final


# --- each fact with a wrong value fails ----------------------------------------------------------

WRONG = {
    "lease address": {"ip": "10.0.0.3"},
    "lease time": {"seconds": 86400},
    "metadata tries": {"tries": 2},
    "metadata instance-id": {"iid": "i-0000000a"},
    "instance-id reported": {"reported": "i-0000000a"},
}


@pytest.mark.parametrize("name", CONSOLES)
@pytest.mark.parametrize("fact", WRONG)
def test_a_wrong_value_is_the_first_mismatch(name: str, fact: str) -> None:
    result = check_console(console(name, **WRONG[fact]), EXPECTED)
    assert isinstance(result, Mismatch), f"{fact} accepted with a wrong value"
    assert (result.fact, result.final, result.generation) == (fact, True, GENERATION_OF[name])
    assert str(result).startswith(f"cirros {GENERATION_OF[name]} generation: {fact}: expected ")


def test_an_empty_reported_id_fails() -> None:
    result = check_console(console("0.3.5", reported=""), EXPECTED)
    assert isinstance(result, Mismatch) and result.fact == "instance-id reported" and result.found == ""


@pytest.mark.parametrize("name", ["0.3.0", "flatbed", "0.3.1"])
@pytest.mark.parametrize("dropbear", ["", "generating rsa key... (failed) "])
def test_dropbear_line_without_a_generated_key_fails(name: str, dropbear: str) -> None:
    result = check_console(console(name, dropbear=dropbear), EXPECTED)
    assert isinstance(result, Mismatch) and result.fact == "host key"
    assert result.found == repr(f"Starting dropbear sshd: {dropbear}OK")


@pytest.mark.parametrize("name", ["0.3.5", "0.5", "0.6"])
def test_host_keys_block_without_a_key_fails(name: str) -> None:
    result = check_console(console(name, keys=""), EXPECTED)
    assert isinstance(result, Mismatch) and result.fact == "host key"


# --- one generation's line in another's console is not accepted -----------------------------------

def test_another_generations_lease_wording_is_not_accepted() -> None:
    # a 0.5 console (busybox 1.29) whose lease line is busybox 1.23's
    text = console("0.5").replace("udhcpc: lease of 10.0.0.2 obtained, lease time 120",
                                  "Lease of 10.0.0.2 obtained, lease time 120")
    result = check_console(text, EXPECTED)
    assert isinstance(result, Mismatch) and (result.fact, result.final) == ("lease", False)
    assert result.found == repr("Lease of 10.0.0.2 obtained, lease time 120")


def test_metadata_after_failed_tries_is_not_the_first_try() -> None:
    text = console("0.6", tries=3).replace("successful after", "failed 1/20: up 3.1. request failed\n"
                                           "failed 2/20: up 5.1. request failed\nsuccessful after")
    result = check_console(text, EXPECTED)
    assert isinstance(result, Mismatch) and (result.fact, result.expected, result.found) == ("metadata tries", "1", "3")


def test_metadata_never_answering_is_missing_not_wrong() -> None:
    text = console("0.3.0").replace("cloud-setup: successful after 1/30 tries: up 4.74. iid=i-00000009",
                                    "cloud-setup: failed 30/30: up 34.1. request failed")
    result = check_console(text, EXPECTED)
    assert isinstance(result, Mismatch) and (result.fact, result.final) == ("metadata", False)
    assert "failed 30/30" in result.found


def test_datasource_none_is_missing() -> None:
    text = console("0.6").replace("=== datasource: ec2 net ===\ninstance-id: i-00000009",
                                  "=== datasource: None None ===")
    result = check_console(text, EXPECTED)
    assert isinstance(result, Mismatch) and result.fact == "instance-id reported"
    assert result.found == repr("=== datasource: None None ===")


# --- the first lease, before the generation is known -----------------------------------------------

@pytest.mark.parametrize("name", CONSOLES)
def test_first_lease_reads_every_wording(name: str) -> None:
    found = first_lease(console(name, ip="10.0.0.7", seconds=600))
    assert found is not None and found[:2] == ("10.0.0.7", 600)


def test_first_lease_is_the_earliest() -> None:
    text = console("flatbed") + "udhcpc: lease of 10.0.0.2 obtained from 10.0.0.1, lease time 120\n"
    text = text.replace("lease time 120\ndeleting", "lease time 60\ndeleting", 1)
    assert first_lease(text) == ("10.0.0.2", 60, "udhcpc: lease of 10.0.0.2 obtained from 10.0.0.1, lease time 60")


def test_no_lease_yet() -> None:
    assert first_lease("Starting network...\nudhcpc: started, v1.35.0\n") is None


# --- every lease, and the host keys alone (the waiters of flatbed/checks/console.py) ---------------

def test_leases_lists_a_renewal_too() -> None:
    text = console("flatbed") + "udhcpc: lease of 10.0.0.2 obtained from 10.0.0.1, lease time 120\n"
    assert [lease[:2] for lease in leases(text)] == [("10.0.0.2", 120), ("10.0.0.2", 120)]


@pytest.mark.parametrize("name", CONSOLES)
def test_host_keys_are_counted_in_each_generation(name: str) -> None:
    assert host_keys(console(name)) == 2


@pytest.mark.parametrize("name", ["0.3.0", "flatbed", "0.3.1", "0.3.5", "0.6"])
def test_no_key_generated_is_no_host_key(name: str) -> None:
    """A dropbear start that generated nothing (``Starting dropbear sshd: OK``) or an empty host key
    block is not a first boot: the sshd waiter keeps waiting, and fails with the console's tail."""
    assert host_keys(console(name, dropbear="", keys="")) is None


@pytest.mark.parametrize("name", CONSOLES)
def test_a_line_still_being_written_is_no_fact(name: str) -> None:
    """A followed console arrives in chunks: cut after each character, the complete lines never give
    a wrong fact (a lease time of 12 for 120, an id cut short), only "not yet" or the right one."""
    from flatbed.checks.console import complete_lines

    text = console(name)
    for end in range(len(text) + 1):
        result = check_console(complete_lines(text[:end]), EXPECTED)
        assert isinstance(result, Facts) or not result.final, (end, str(result))
        for ip, seconds, _ in leases(complete_lines(text[:end])):
            assert (ip, seconds) == ("10.0.0.2", 120), end
