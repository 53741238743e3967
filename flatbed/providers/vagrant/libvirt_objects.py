"""The run's libvirt objects, by name: isolated networks made before ``vagrant up``, and the
domains, volumes and networks removed at teardown (also those an interrupted ``vagrant up`` made
but had not recorded). libvirt-python is imported when first used."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flatbed.errors import FlatbedError
from flatbed.providers.vagrant.naming import POOL
from flatbed.providers.vagrant.record import VagrantRecord


@contextmanager
def connection(uri: str) -> Iterator[Any]:
    """A libvirt connection (libvirt.virConnect), closed at the end; FlatbedError when none."""
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors arrive as exceptions
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as e:
        raise FlatbedError(f"cannot connect to libvirt at {uri}: {e.get_error_message()}") from None
    try:
        yield conn
    finally:
        conn.close()


def unanswered(uri: str, timeout: float) -> str | None:
    """Why the libvirt at ``uri`` does not answer within ``timeout`` seconds, or None when it does.
    (A daemon thread: a remote URI may hang in its transport, and the caller must not.)"""
    outcome: dict[str, str] = {}

    def probe() -> None:
        try:
            with connection(uri) as conn:
                outcome["version"] = str(conn.getLibVersion())
        except FlatbedError as e:
            outcome["error"] = str(e)

    thread = threading.Thread(target=probe, name=f"probe {uri}", daemon=True)
    thread.start()
    thread.join(timeout)
    if "version" in outcome:
        return None
    return f"--libvirt-uri {uri} does not answer ({outcome.get('error') or f'nothing within {timeout:g} s'})"


def network_xml(name: str, bridge: str, address: str | None = None, netmask: str | None = None) -> str:
    """An isolated libvirt network: no <forward>, no DHCP, no DNS; an IP only for management (pure).

    The address is written as address+netmask (not prefix): vagrant-libvirt matches existing
    networks by the netmask attribute.
    """
    ip = f"\n  <dns enable='no'/>\n  <ip address='{address}' netmask='{netmask}'/>" if address else ""
    return f"<network>\n  <name>{name}</name>\n  <bridge name='{bridge}' stp='off' delay='0'/>{ip}\n</network>\n"


def create_network(conn: Any, xml: str) -> None:
    net = conn.networkDefineXML(xml)
    net.create()


def bridge_netfilter_off(bridge: str) -> None:
    """A local bridge in the host's namespace: keep its frames out of the host's iptables."""
    for key in ("nf_call_iptables", "nf_call_ip6tables", "nf_call_arptables"):
        path = Path("/sys/class/net") / bridge / "bridge" / key
        if path.exists():
            path.write_text("0")


def domain_running(uri: str, domain: str) -> bool:
    import libvirt

    try:
        with connection(uri) as conn:
            return bool(conn.lookupByName(domain).isActive())
    except (FlatbedError, libvirt.libvirtError):
        return False


def remove(conn: Any, rec: VagrantRecord) -> list[str]:
    """Destroy and undefine the run's domains, delete its volumes and networks; what was removed."""
    import libvirt

    removed: list[str] = []
    for name in rec.domains:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                          | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        removed.append(f"domain {name}")
    try:
        pool = conn.storagePoolLookupByName(POOL)
        pool.refresh(0)
    except libvirt.libvirtError:
        pool = None
    for name in rec.volumes if pool else []:
        try:
            pool.storageVolLookupByName(name).delete(0)
            removed.append(f"volume {name}")
        except libvirt.libvirtError:
            pass
    for name in rec.networks.values():
        try:
            net = conn.networkLookupByName(name)
        except libvirt.libvirtError:
            continue
        if net.isActive():
            net.destroy()
        net.undefine()
        removed.append(f"network {name}")
    return removed


def present(conn: Any, rec: VagrantRecord) -> list[str]:
    """The run's recorded domains, networks and volumes that still exist."""
    import libvirt

    domains = {d.name() for d in conn.listAllDomains()}
    networks = {n.name() for n in conn.listAllNetworks()}
    try:
        volumes = set(conn.storagePoolLookupByName(POOL).listVolumes())
    except libvirt.libvirtError:
        volumes = set()
    return ([f"domain {d}" for d in rec.domains if d in domains]
            + [f"network {n}" for n in rec.networks.values() if n in networks]
            + [f"volume {v}" for v in rec.volumes if v in volumes])
