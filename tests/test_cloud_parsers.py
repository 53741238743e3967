"""Parsing what the controller's CLIs print: nova tables, nova-manage fixed list, the dnsmasq hostsfile."""

from __future__ import annotations

from flatbed.cloud import (
    FixedIp,
    instance_id,
    parse_fixed_list,
    parse_hostsfile,
    parse_ip_network,
    parse_properties,
    parse_table,
)

NOVA_LIST = """\
+--------------------------------------+--------+--------+----------------------+
|                  ID                  |  Name  | Status |       Networks       |
+--------------------------------------+--------+--------+----------------------+
| 45f252f8-84b0-484a-9642-00b396a8056c | cirros | ACTIVE | novanetwork=10.0.0.2 |
| 11111111-2222-3333-4444-555555555555 | vm two | BUILD  |                      |
+--------------------------------------+--------+--------+----------------------+
"""

NOVA_SHOW = """\
+-------------------------------+--------------------------------------+
|            Property           |                Value                 |
+-------------------------------+--------------------------------------+
| OS-EXT-SRV-ATTR:host          | compute-1                            |
| OS-EXT-SRV-ATTR:instance_name | instance-00000009                    |
| name                          | cirros                               |
| novanetwork network           | 10.0.0.2                             |
| status                        | ACTIVE                               |
+-------------------------------+--------------------------------------+
"""

FIXED_LIST = (
    "network           \tIP address     \tMAC address      \thostname       \tinstance\tallocated\tleased\treserved\n"
    "10.0.0.0/24       \t10.0.0.1       \tNone             \tNone           \tNone    \tFalse    \tFalse \tTrue\n"
    "10.0.0.0/24       \t10.0.0.2       \tfa:16:3e:07:b0:07\tcirros         \t9       \tTrue     \tTrue  \tFalse\n"
    "10.0.0.0/24       \t10.0.0.3       \tfa:16:3e:00:00:01\tvm2            \t10      \tTrue     \tFalse \tFalse\n"
    "10.0.0.0/24       \t10.0.0.4       \tfa:16:3e:00:00:02\tgone           \t8       \tFalse    \tTrue  \tFalse\n"
    "10.0.0.0/24       \t10.0.0.5       \tNone             \tNone           \tNone    \tFalse    \tFalse \tFalse\n"
)


def test_nova_list_rows_keyed_by_header():
    rows = parse_table(NOVA_LIST)
    assert [(r["Name"], r["Status"], r["Networks"]) for r in rows] == [
        ("cirros", "ACTIVE", "novanetwork=10.0.0.2"), ("vm two", "BUILD", "")]
    assert parse_ip_network(rows[0]["Networks"]) == "10.0.0.2"
    assert parse_ip_network(rows[1]["Networks"]) is None


def test_empty_listing_has_no_rows():
    assert parse_table(NOVA_LIST.splitlines()[0] + "\n" + NOVA_LIST.splitlines()[1] + "\n") == []
    assert parse_table("") == []


def test_nova_show_properties():
    props = parse_properties(NOVA_SHOW)
    assert props["OS-EXT-SRV-ATTR:host"] == "compute-1"
    assert props["novanetwork network"] == "10.0.0.2"
    assert "Property" not in props


def test_fixed_list_states():
    rows = {f.address: f for f in parse_fixed_list(FIXED_LIST)}
    assert rows["10.0.0.1"] == FixedIp("10.0.0.1", None, None, None, False, False, True)
    assert rows["10.0.0.2"].instance == 9 and rows["10.0.0.2"].lease == "leased"
    assert rows["10.0.0.3"].lease == "allocated"      # handed to nova, DHCP not yet done
    # Deallocated but dnsmasq's `del` has not come: not back in the pool yet.
    assert not rows["10.0.0.4"].in_pool
    assert rows["10.0.0.5"].in_pool and rows["10.0.0.5"].lease == "-"
    assert not rows["10.0.0.1"].in_pool               # reserved addresses never are


def test_hostsfile_entries_by_address():
    text = "fa:16:3e:07:b0:07,cirros.novalocal,10.0.0.2\nfa:16:3e:00:00:01,vm2.novalocal,10.0.0.3"
    assert parse_hostsfile(text) == {"10.0.0.2": ("fa:16:3e:07:b0:07", "cirros.novalocal"),
                                     "10.0.0.3": ("fa:16:3e:00:00:01", "vm2.novalocal")}
    assert parse_hostsfile("") == {}


def test_instance_id_from_its_name():
    assert instance_id("instance-00000009") == 9
    assert instance_id("instance-0000000a") == 10
    assert instance_id("i-00000009") is None and instance_id("") is None
