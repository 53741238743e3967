"""flatbed/domains.py: a guest's NICs from its domain XML (``virsh dumpxml``, ``libvirt.xml``)."""

from __future__ import annotations

from flatbed.domains import DomainNic, parse_nics

RUNNING = """\
<domain type='qemu' id='1'>
  <name>instance-00000009</name>
  <devices>
    <disk type='file' device='disk'><source file='/var/lib/nova/instances/instance-00000009/disk'/></disk>
    <interface type='bridge'>
      <mac address='fa:16:3e:07:b0:07'/>
      <source bridge='br100'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
      <filterref filter='nova-instance-instance-00000009-fa163e07b007'>
        <parameter name='IP' value='10.0.0.2'/>
        <parameter name='DHCPSERVER' value='10.0.0.1'/>
      </filterref>
    </interface>
  </devices>
</domain>
"""


def test_running_domain_nic() -> None:
    assert parse_nics(RUNNING) == [DomainNic(
        mac="fa:16:3e:07:b0:07", bridge="br100", tap="vnet3", filter="nova-instance-instance-00000009-fa163e07b007",
        filter_parameters={"IP": "10.0.0.2", "DHCPSERVER": "10.0.0.1"})]


def test_libvirt_xml_has_no_tap_yet() -> None:
    """nova-compute's libvirt.xml names no target: libvirt picks the vnet when the domain starts."""
    xml = "<domain><devices><interface type='bridge'><mac address='fa:16:3e:00:00:01'/>" \
          "<source bridge='br100'/></interface></devices></domain>"
    assert parse_nics(xml) == [DomainNic(mac="fa:16:3e:00:00:01", bridge="br100", tap=None)]
    assert parse_nics("<domain><devices/></domain>") == []
