"""The libvirt domain XML of an instance, shaped after Essex's ``libvirt.xml.template``.

Pure: takes the instance's facts, returns the XML that ``connection.py`` defines and also
writes to ``<instance dir>/libvirt.xml`` (the domain actually defined, as Essex kept it).
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import quoteattr


@dataclass(frozen=True)
class DomainSpec:
    name: str                 # instance-%08x
    uuid: str
    memory_mb: int
    vcpus: int
    virt_type: str            # qemu (TCG) or kvm
    console_log: str          # serial to file, as Essex: get_console_output reads it
    mac: str
    bridge: str
    kernel: str | None = None  # direct kernel boot (the cirros-compatible guest)
    ramdisk: str | None = None
    cmdline: str = ""
    disk: str | None = None   # qcow2 overlay (a real cirros image)
    # nwfilter of the NIC (nova-instance-<name>-<mac without colons>) and its parameters.
    filterref: str | None = None
    filter_params: tuple[tuple[str, str], ...] = ()


def _filterref(spec: DomainSpec) -> str:
    """Essex's libvirt.xml.template: ``<filterref filter="nova-instance-…">`` with its parameters."""
    if not spec.filterref:
        return ""
    params = "".join(f"        <parameter name={quoteattr(name)} value={quoteattr(value)}/>\n"
                     for name, value in spec.filter_params)
    return f"      <filterref filter={quoteattr(spec.filterref)}>\n{params}      </filterref>\n"


def domain_xml(spec: DomainSpec) -> str:
    if spec.kernel:
        boot = (f"    <kernel>{spec.kernel}</kernel>\n"
                + (f"    <initrd>{spec.ramdisk}</initrd>\n" if spec.ramdisk else "")
                + f"    <cmdline>{spec.cmdline}</cmdline>\n")
    else:
        boot = "    <boot dev='hd'/>\n"
    disk = ""
    if spec.disk:
        disk = (f"    <disk type='file' device='disk'>\n"
                f"      <driver name='qemu' type='qcow2' cache='none'/>\n"
                f"      <source file={quoteattr(spec.disk)}/>\n"
                f"      <target dev='vda' bus='virtio'/>\n"
                f"    </disk>\n")
    return f"""<domain type='{spec.virt_type}'>
  <name>{spec.name}</name>
  <uuid>{spec.uuid}</uuid>
  <memory unit='MiB'>{spec.memory_mb}</memory>
  <vcpu>{spec.vcpus}</vcpu>
  <os>
    <type>hvm</type>
{boot}  </os>
  <!-- Without ACPI/APIC a direct-kernel-boot guest hangs on a missing RSDP. -->
  <features>
    <acpi/>
    <apic/>
  </features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
{disk}    <interface type='bridge'>
      <source bridge='{spec.bridge}'/>
      <mac address='{spec.mac}'/>
      <model type='virtio'/>
{_filterref(spec)}    </interface>
    <serial type='file'>
      <source path={quoteattr(spec.console_log)}/>
    </serial>
    <serial type='pty'/>
  </devices>
</domain>
"""


# --- nwfilters (Essex nova/virt/libvirt/firewall.py NWFilterFirewall) --------------------------

def filter_container(name: str, filterrefs: list[str]) -> str:
    """A ``chain='root'`` filter that only references others (nova-base, the instance filters)."""
    refs = "".join(f"<filterref filter={quoteattr(ref)}/>" for ref in filterrefs)
    return f"<filter name={quoteattr(name)} chain='root'>{refs}</filter>"


# Essex gave this filter a fixed uuid (NWFilterFirewall.nova_dhcp_filter).
NOVA_ALLOW_DHCP_SERVER_UUID = "891e4787-e5c0-d59b-cbd6-41bc3c6b36fc"


def nova_allow_dhcp_server_xml() -> str:
    """nova's own ``ipv4``-chain copy of allow-dhcp-server (defined, not referenced by nova-base)."""
    return f"""<filter name='nova-allow-dhcp-server' chain='ipv4'>
  <uuid>{NOVA_ALLOW_DHCP_SERVER_UUID}</uuid>
  <rule action='accept' direction='out' priority='100'>
    <udp srcipaddr='0.0.0.0' dstipaddr='255.255.255.255' srcportstart='68' dstportstart='67'/>
  </rule>
  <rule action='accept' direction='in' priority='100'>
    <udp srcipaddr='$DHCPSERVER' srcportstart='67' dstportstart='68'/>
  </rule>
</filter>
"""
