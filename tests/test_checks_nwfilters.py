"""flatbed/checks/nwfilters.py: libvirt's dumps of a compute's filters against Essex's definitions.

The dumps are what ``virsh nwfilter-dumpxml`` / ``nwfilter-binding-dumpxml`` print on a compute of
the testbed (libvirt 9, Debian 12) for the document's first guest.
"""

from __future__ import annotations

import pytest

from flatbed.checks import nwfilters

NOVA_BASE = """<filter name='nova-base' chain='root'>
  <uuid>e60752b1-a307-4a29-a31c-b608faeaea71</uuid>
  <filterref filter='no-mac-spoofing'/>
  <filterref filter='no-ip-spoofing'/>
  <filterref filter='no-arp-spoofing'/>
  <filterref filter='allow-dhcp-server'/>
</filter>
"""
NOVA_VPN = """<filter name='nova-vpn' chain='root'>
  <uuid>83f84ce3-77de-4c75-8d0a-a6202f68a4c5</uuid>
  <filterref filter='allow-dhcp-server'/>
</filter>
"""
NOVA_DHCP = """<filter name='nova-allow-dhcp-server' chain='ipv4' priority='-700'>
  <uuid>891e4787-e5c0-d59b-cbd6-41bc3c6b36fc</uuid>
  <rule action='accept' direction='out' priority='100'>
    <udp srcipaddr='0.0.0.0' dstipaddr='255.255.255.255' srcportstart='68' dstportstart='67'/>
  </rule>
  <rule action='accept' direction='in' priority='100'>
    <udp srcipaddr='$DHCPSERVER' srcportstart='67' dstportstart='68'/>
  </rule>
</filter>
"""
INSTANCE = """<filter name='nova-instance-instance-00000009-fa163e2ce8ec' chain='root'>
  <uuid>4a79406f-8aa5-407b-98c4-2821ddfc8da5</uuid>
  <filterref filter='nova-base'/>
</filter>
"""
BINDING = """<filterbinding>
  <owner>
    <name>instance-00000009</name>
    <uuid>9f8969af-bc3c-45ba-950c-21a8ee27304f</uuid>
  </owner>
  <portdev name='vnet0'/>
  <mac address='fa:16:3e:2c:e8:ec'/>
  <filterref filter='nova-instance-instance-00000009-fa163e2ce8ec'>
    <parameter name='DHCPSERVER' value='10.0.0.1'/>
    <parameter name='IP' value='10.0.0.2'/>
    <parameter name='MAC' value='fa:16:3e:2c:e8:ec'/>
    <parameter name='PROJMASK' value='255.255.255.0'/>
    <parameter name='PROJNET' value='10.0.0.0'/>
  </filterref>
</filterbinding>
"""
DUMPS = {"nova-base": NOVA_BASE, "nova-vpn": NOVA_VPN, "nova-allow-dhcp-server": NOVA_DHCP}
INSTANCE_FILTER = "nova-instance-instance-00000009-fa163e2ce8ec"


def problems(name: str, dump: str) -> list[str]:
    want = nwfilters.essex_static()[name] if name in DUMPS else nwfilters.essex_instance(name)
    return nwfilters.filter_problems(want, nwfilters.parse_filter(dump, keep_uuid=want.uuid is not None))


@pytest.mark.parametrize("name", DUMPS)
def test_libvirts_dumps_are_essexs_static_filters(name: str) -> None:
    assert problems(name, DUMPS[name]) == []


def test_the_instance_filter_is_the_container_of_nova_base() -> None:
    assert problems(INSTANCE_FILTER, INSTANCE) == []


@pytest.mark.parametrize(("name", "old", "new", "says"), [
    ("nova-base", "<filterref filter='no-arp-spoofing'/>\n", "", "references"),
    ("nova-base", "no-ip-spoofing", "clean-traffic", "references"),
    ("nova-vpn", "allow-dhcp-server", "nova-base", "references"),
    ("nova-allow-dhcp-server", "891e4787-e5c0-d59b-cbd6-41bc3c6b36fc", "0b1c2d3e-0000-4000-8000-000000000000", "uuid"),
    ("nova-allow-dhcp-server", "srcipaddr='$DHCPSERVER'", "srcipaddr='0.0.0.0'", "rules"),
    ("nova-allow-dhcp-server", "direction='in' priority='100'", "direction='inout' priority='100'", "rules"),
    ("nova-allow-dhcp-server", "chain='ipv4' priority='-700'", "chain='ipv4' priority='-100'", "rules"),
    ("nova-allow-dhcp-server", "chain='ipv4'", "chain='root'", "chain"),
    (INSTANCE_FILTER, "<filterref filter='nova-base'/>", "<filterref filter='nova-vpn'/>", "references"),
])
def test_a_filter_off_essexs_definition_fails(name: str, old: str, new: str, says: str) -> None:
    dump = {**DUMPS, INSTANCE_FILTER: INSTANCE}[name]
    assert old in dump
    found = problems(name, dump.replace(old, new))
    assert says in [p.split(": ", 1)[1].split(" ")[0] for p in found], found


def test_the_binding_carries_the_guests_parameters() -> None:
    assert nwfilters.parse_binding(BINDING) == nwfilters.Binding(
        owner="instance-00000009", owner_uuid="9f8969af-bc3c-45ba-950c-21a8ee27304f", portdev="vnet0",
        mac="fa:16:3e:2c:e8:ec", filter=INSTANCE_FILTER,
        parameters={"DHCPSERVER": "10.0.0.1", "IP": "10.0.0.2", "MAC": "fa:16:3e:2c:e8:ec",
                    "PROJMASK": "255.255.255.0", "PROJNET": "10.0.0.0"})
