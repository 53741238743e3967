"""Nodes as libvirt VMs, brought up by the project's ``Vagrantfile`` through vagrant-libvirt.

Layout of one testbed ``<run>`` (default, hermetic mode):

- namespace ``<run>-<outside>`` (the topology's outside host): a private libvirtd
  (:mod:`flatbed.providers.libvirtd`), the two libvirt networks' bridges and the VMs' taps; the
  management bridge holds the topology's gateway address, so this namespace *is* the document's
  host machine. ``vagrant`` runs in it too, and paramiko connects from it.
- libvirt networks ``<run>-mgmt`` (node addresses, no DHCP, no DNS, no forwarding) and
  ``<run>-flat`` (no IP at all, no forwarding), created by flatbed before ``vagrant up`` so that
  parallel machines never race to create them (vagrant-libvirt #104); Vagrant only attaches.
- domains ``<run>-<node>`` from the box (:mod:`flatbed.images.box`), exactly two NICs each
  (``mgmt_attach = false``), disks ``<run>-<node>.img`` in the private daemon's pool.

With ``libvirt_uri`` (``--libvirt-uri``) an existing libvirt is used instead: the networks and
domains are created there under the same names, the outside host is this host (the management
bridge's address), and bridge netfilter is switched off on the two bridges when they are local.

Every name is recorded in the state file before it is created; teardown removes exactly those
by name through libvirt (which also covers machines an interrupted ``vagrant up`` had not
recorded yet), then the daemon and the namespace. Vagrant's own files (machine folders, its
home) live in the testbed directory; only the box store is shared (``<cache>/vagrant.d``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vagrant as python_vagrant

from flatbed import hostnet, procs
from flatbed.errors import FlatbedError, NodeGoneError
from flatbed.images.base import BaseImage
from flatbed.images.box import Box, ensure_box
from flatbed.images.cache import cache_dir
from flatbed.localnode import LocalNode
from flatbed.node import Node
from flatbed.providers import kvmprobe
from flatbed.providers.base import Provider
from flatbed.providers.libvirtd import PrivateLibvirtd
from flatbed.sshnode import SSHNode, SSHTarget, drop_connections, parse_ssh_config
from flatbed.topology import Node as TopologyNode
from flatbed.topology import Topology
from flatbed.waiters import wait_until

REPO = Path(__file__).resolve().parents[2]
# Per role: enough for the controller's dnsmasq/nova-network, and for a compute's libvirt plus
# one 256 MiB guest with room for a second. Under TCG, idle VMs touch less than this.
MEMORY_MIB = {"controller": 1024, "compute": 1536}
CPUS = 1
# Vagrant's wait for SSH; under TCG a node boots in 30-60 s, three in parallel share 2 cores.
BOOT_TIMEOUT = 600
UP_TIMEOUT = 1200
VAGRANT_PLUGIN = "vagrant-libvirt"
TOOLS = ("vagrant", "qemu-img", "mkfs.ext4", "nsenter", "unshare", "qemu-system-x86_64")
POOL = "default"
RUNTIME_DIR = Path("/run/flatbed")  # the private libvirtd's sockets, /run/flatbed/<run id>/


@dataclass(frozen=True)
class RunNames:
    """Every name this provider creates, derived from the run id so that cleanup can find it."""

    run: str
    outside: str
    mgmt_nic: str = "eth1"  # the outside host's NIC name in the topology
    private: bool = True

    @property
    def netns(self) -> str:
        return f"{self.run}-{self.outside}"

    @property
    def networks(self) -> dict[str, str]:
        return {"management": f"{self.run}-mgmt", "flat": f"{self.run}-flat"}

    @property
    def bridges(self) -> dict[str, str]:
        """In the testbed's own namespace the management bridge is the outside host's NIC (``eth1``,
        as with containers); in the host's namespace both carry the run id (at most 15 characters)."""
        if self.private:
            return {"management": self.mgmt_nic, "flat": "flat"}
        return {"management": f"{self.run}-m", "flat": f"{self.run}-f"}

    @property
    def domain_prefix(self) -> str:
        return f"{self.run}-"

    def domain(self, node: str) -> str:
        return f"{self.run}-{node}"

    def volume(self, node: str) -> str:
        return f"{self.domain(node)}.img"


# --- what the Vagrantfile reads -------------------------------------------------------------


def kernel_cmdline(base: str, topo: Topology, node: TopologyNode, ssh_public_key: str) -> str:
    """The node's kernel command line: the box's base plus what the box's boot scripts read (pure).

    Values must not contain spaces (the initramfs splits on them): the key is base64-encoded.
    """
    mgmt, flat = topo.management, topo.flat
    key = base64.b64encode(ssh_public_key.strip().encode() + b"\n").decode()
    return " ".join([
        base,
        f"systemd.hostname={node.name}",
        f"flatbed.ifnames={mgmt.interface}={node.macs[mgmt.interface]},{flat.interface}={node.macs[flat.interface]}",
        f"flatbed.mgmt={mgmt.interface}={node.address}/{mgmt.cidr.prefixlen}",
        f"flatbed.role={node.role}",
        f"flatbed.ssh_key={key}",
    ])


def vagrant_config(topo: Topology, names: RunNames, *, box: str, cmdline_base: str, libvirt_uri: str,
                   driver: str, ssh_private_key: Path, ssh_public_key: str, logs: Path) -> dict[str, Any]:
    """The JSON rendering of the topology the Vagrantfile reads (pure)."""
    nodes = []
    for node in topo.stack_nodes:
        nodes.append({
            "name": node.name,
            "role": node.role,
            "address": str(node.address),
            "mac_management": node.macs[topo.management.interface],
            "mac_flat": node.macs[topo.flat.interface],
            "memory_mib": MEMORY_MIB[node.role],
            "cpus": CPUS,
            "cmdline": kernel_cmdline(cmdline_base, topo, node, ssh_public_key),
            "console_log": str(logs / f"{node.name}.console.log"),
        })
    return {
        "run": names.run,
        "box": box,
        "libvirt_uri": libvirt_uri,
        "driver": driver,
        # Nested guests: KVM needs the host CPU passed through (host-model breaks nesting on
        # some hosts); TCG's host-model offers svm, which is what nested KVM inside needs.
        "cpu_mode": "host-passthrough" if driver == "kvm" else "host-model",
        "domain_prefix": names.domain_prefix,
        "ssh_private_key": str(ssh_private_key),
        "boot_timeout": BOOT_TIMEOUT,
        "management": {"network": names.networks["management"], "netmask": str(topo.management.cidr.netmask)},
        "flat": {"network": names.networks["flat"]},
        "nodes": nodes,
    }


def network_xml(name: str, bridge: str, address: str | None = None, netmask: str | None = None) -> str:
    """An isolated libvirt network: no <forward>, no DHCP, no DNS; an IP only for management (pure).

    The address is written as address+netmask (not prefix): vagrant-libvirt matches existing
    networks by the netmask attribute.
    """
    ip = f"\n  <dns enable='no'/>\n  <ip address='{address}' netmask='{netmask}'/>" if address else ""
    return f"<network>\n  <name>{name}</name>\n  <bridge name='{bridge}' stp='off' delay='0'/>{ip}\n</network>\n"


# Lines of `vagrant up` worth a progress line: (pattern, phase).
VAGRANT_PHASES = (
    (re.compile(r"Uploading base box image as volume"), "uploading the box volume"),
    (re.compile(r"Creating image \(snapshot of base box volume\)"), "disk created"),
    (re.compile(r"Starting domain\."), "domain started"),
    (re.compile(r"Machine booted and ready!"), "SSH ready"),
)
_VAGRANT_LINE = re.compile(r"^(?:==> )?\s*([a-z0-9][a-z0-9-]*): (.*)$")


def vagrant_phase(line: str) -> tuple[str, str] | None:
    """(node, phase) when a ``vagrant up`` output line marks a bring-up phase (pure)."""
    match = _VAGRANT_LINE.match(line.rstrip())
    if not match:
        return None
    for pattern, phase in VAGRANT_PHASES:
        if pattern.search(match.group(2)):
            return match.group(1), phase
    return None


class NetnsVagrant(python_vagrant.Vagrant):
    """python-vagrant running every vagrant command inside the testbed's network namespace."""

    def __init__(self, netns: str | None, **kwargs: Any):
        super().__init__(**kwargs)
        self.netns = netns

    def _make_vagrant_command(self, args):  # noqa: ANN001, ANN202 - python-vagrant's signature
        command = super()._make_vagrant_command(args)
        return (["nsenter", f"--net=/run/netns/{self.netns}", "--"] + command) if self.netns else command


class VagrantProvider(Provider):
    name = "vagrant"
    _plugin_checked: str | None = None  # "ok" or why not, once per process

    # --- usability ------------------------------------------------------------------------

    @classmethod
    def unusable(cls) -> str | None:
        if os.geteuid() != 0:
            return "needs root"
        for tool in TOOLS:
            if not shutil.which(tool):
                return f"{tool} is not installed (./run setup --provider vagrant installs the VM packages)"
        if cls._plugin_checked is None:
            try:
                plugins = NetnsVagrant(None, root=str(REPO), env=_vagrant_env({})).plugin_list()
                names = {p.name for p in plugins}
                cls._plugin_checked = "ok" if VAGRANT_PLUGIN in names else f"the {VAGRANT_PLUGIN} plugin is missing"
            except (OSError, subprocess.CalledProcessError) as e:
                cls._plugin_checked = f"`vagrant plugin list` failed: {e}"
        return None if cls._plugin_checked == "ok" else cls._plugin_checked

    @classmethod
    def auto_unsuitable(cls) -> str | None:
        why = cls.unusable()
        if why:
            return why
        probe = kvm_probe()
        return None if probe.usable else f"KVM is not usable here ({probe.reason}); VMs would run under TCG"

    # --- names and state ------------------------------------------------------------------

    @property
    def run(self) -> str:
        return self.state.run_id

    @property
    def names(self) -> RunNames:
        return RunNames(self.run, self.topology.outside.name, self.topology.management.interface, self.private)

    @property
    def rec(self) -> dict[str, Any]:
        """This provider's record in the state file."""
        return self.state.resources.setdefault("vagrant", {})

    @property
    def private(self) -> bool:
        return not self.options.get("libvirt_uri")

    def _libvirtd(self) -> PrivateLibvirtd:
        return PrivateLibvirtd(self.state.dir / "libvirt", self.state.dir / "logs", cache_dir() / "libvirt",
                               self.names.netns, RUNTIME_DIR / self.run)

    @property
    def uri(self) -> str:
        return self.options.get("libvirt_uri") or self._libvirtd().uri

    # --- bring-up -------------------------------------------------------------------------

    def create(self, base: BaseImage) -> None:
        started = time.monotonic()
        box = ensure_box(base, progress=lambda m: self.progress(f"images: {m}"))
        probe = kvm_probe()
        driver = "kvm" if probe.usable else "qemu"
        if probe.usable:
            self.progress(f"vagrant: VMs use KVM ({probe.reason})")
        else:
            self.progress(f"vagrant: WARNING: KVM is not usable here ({probe.reason}); the VMs run under TCG "
                          "(libvirt driver qemu) and take minutes to boot")
        names = self.names
        self._record(names, box, driver)
        self.state.save()  # everything named before anything is created

        if self.private:
            self._start_private_libvirt(names)
        conn = self._connect()
        try:
            self._create_networks(conn, names)
        finally:
            conn.close()
        self._write_vagrant_config(names, box, driver)
        self._vagrant_up(started)
        self._record_ssh()
        for node in self.topology.stack_nodes:
            self._check_nics(node)
        self.progress(f"vagrant: {len(self.topology.stack_nodes)} VMs up in {time.monotonic() - started:.1f} s")

    def _record(self, names: RunNames, box: Box, driver: str) -> None:
        vdir = self.state.dir / "vagrant"
        self.rec.update(
            private=self.private, uri=self.uri, box=box.name, driver=driver,
            netns=names.netns if self.private else None,
            networks=names.networks, bridges=names.bridges,
            domains=[names.domain(n.name) for n in self.topology.stack_nodes],
            volumes=[names.volume(n.name) for n in self.topology.stack_nodes],
            vagrant_dir=str(vdir), ssh_key=str(self.state.dir / "ssh" / "id_ed25519"),
        )
        for node in self.topology.nodes:
            record = {"role": node.role}
            if node.role != "outside":
                record["domain"] = names.domain(node.name)
            self.state.nodes[node.name] = record

    def _start_private_libvirt(self, names: RunNames) -> None:
        if not shutil.which("libvirtd"):
            raise FlatbedError("libvirtd is not installed (install libvirt-daemon-system, "
                               "or pass --libvirt-uri to use an existing libvirt)")
        watch = time.monotonic()
        hostnet.create_namespace(names.netns)
        # The namespace is a host on two switches, not a firewall: bridged frames skip netfilter,
        # and the host side stays silent on IPv6.
        for key in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
                    "net.bridge.bridge-nf-call-arptables", "net.ipv6.conf.all.disable_ipv6",
                    "net.ipv6.conf.default.disable_ipv6"):
            hostnet.sysctl(names.netns, key, "1" if "ipv6.conf" in key else "0")
        daemon = self._libvirtd()
        daemon.prepare()
        self.rec["libvirtd_pid"] = daemon.start()
        self.state.save()
        daemon.wait_ready(self.rec["libvirtd_pid"])
        self.progress(f"vagrant: private libvirtd in namespace {names.netns} answering after "
                      f"{time.monotonic() - watch:.1f} s")

    def _connect(self):  # noqa: ANN202 - libvirt.virConnect, imported lazily
        import libvirt

        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors arrive as exceptions
        try:
            return libvirt.open(self.uri)
        except libvirt.libvirtError as e:
            raise FlatbedError(f"cannot connect to libvirt at {self.uri}: {e.get_error_message()}") from None

    def _create_networks(self, conn, names: RunNames) -> None:  # noqa: ANN001
        mgmt = self.topology.management
        specs = {
            "management": network_xml(names.networks["management"], names.bridges["management"],
                                      str(mgmt.gateway), str(mgmt.cidr.netmask)),
            "flat": network_xml(names.networks["flat"], names.bridges["flat"]),
        }
        for key, xml in specs.items():
            net = conn.networkDefineXML(xml)
            net.create()
            if not self.private:
                _bridge_netfilter_off(names.bridges[key])
        if self.private:
            # The document's host machine routes the flat range via the controller (§3.6: its pings
            # reach the controller, which does not forward them). Only in the testbed's own namespace.
            hostnet.add_route(names.netns, str(self.topology.flat.cidr), str(self.topology.controller.address))
        self.progress(f"vagrant: networks {', '.join(names.networks.values())} up "
                      f"({self.topology.outside.name} at {mgmt.gateway} on the management bridge)")

    def _write_vagrant_config(self, names: RunNames, box: Box, driver: str) -> None:
        key = Path(self.rec["ssh_key"])
        public = _make_ssh_key(key)
        vdir = Path(self.rec["vagrant_dir"])
        (vdir / "home").mkdir(parents=True, exist_ok=True)
        boxes = vdir / "home" / "boxes"
        if not boxes.is_symlink():
            boxes.symlink_to(box.vagrant_home / "boxes")  # the shared box store, nothing else
        cfg = vagrant_config(self.topology, names, box=box.name, cmdline_base=box.cmdline, libvirt_uri=self.uri,
                             driver=driver, ssh_private_key=key, ssh_public_key=public,
                             logs=self.state.dir / "logs")
        (vdir / "topology.json").write_text(json.dumps(cfg, indent=2) + "\n")

    def vagrant(self) -> NetnsVagrant:
        """python-vagrant on the project's Vagrantfile, with this run's environment."""
        vdir = Path(self.rec["vagrant_dir"])
        env = _vagrant_env({
            "VAGRANT_HOME": str(vdir / "home"),
            "VAGRANT_DOTFILE_PATH": str(vdir / "machines"),
            "FLATBED_VAGRANT_CONFIG": str(vdir / "topology.json"),
            "LIBVIRT_DEFAULT_URI": self.uri,
        })
        return NetnsVagrant(self.rec.get("netns"), root=str(REPO), env=env)

    def _vagrant_up(self, started: float) -> None:
        """``vagrant up`` with its output in ``logs/vagrant-up.log`` and phases as progress lines.

        Not python-vagrant's streaming ``up()``: its generator waits for vagrant when closed, so
        an interrupted bring-up would block. Here vagrant runs in its own session and is killed
        (by ``destroy``) when this process is interrupted; the command line is python-vagrant's.
        """
        v = self.vagrant()
        command = v._make_vagrant_command(["up", "--provider=libvirt", "--parallel"])
        log_path = self.state.dir / "logs" / "vagrant-up.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        watch = time.monotonic()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(command, cwd=v.root, env=v.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            self.rec["vagrant_pid"] = proc.pid
            self.state.save()
            self.progress(f"vagrant: vagrant up of {len(self.topology.stack_nodes)} VMs "
                          f"(output in {log_path})")
            tail: list[str] = []
            assert proc.stdout is not None
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").rstrip()
                tail = (tail + [line])[-20:]
                phase = vagrant_phase(line)
                if phase:
                    self.progress(f"vagrant: {phase[0]}: {phase[1]} ({time.monotonic() - watch:.0f} s)")
                if time.monotonic() - watch > UP_TIMEOUT:
                    break
            try:
                rc = proc.wait(timeout=max(1.0, UP_TIMEOUT - (time.monotonic() - watch)))
            except subprocess.TimeoutExpired:
                raise FlatbedError(f"vagrant up did not finish within {UP_TIMEOUT} s; see {log_path}") from None
        self.rec.pop("vagrant_pid", None)
        self.state.save()
        if rc != 0:
            detail = next((ln for ln in reversed(tail) if ln.strip() and not ln.lstrip().startswith("from ")), "")
            raise FlatbedError(f"vagrant up failed (rc {rc}): {detail.strip()[:300]}; see {log_path}")
        self.progress(f"vagrant: vagrant up done in {time.monotonic() - watch:.1f} s")

    def _record_ssh(self) -> None:
        """``vagrant ssh-config`` once for all machines, checked against the topology."""
        text = self.vagrant().ssh_config()
        hosts = parse_ssh_config(text)
        for node in self.topology.stack_nodes:
            conf = hosts.get(node.name)
            if not conf:
                raise FlatbedError(f"vagrant ssh-config has no entry for {node.name}")
            if conf.get("HostName") != str(node.address):
                raise FlatbedError(f"{node.name}: Vagrant reaches it at {conf.get('HostName')}, "
                                   f"not at its management address {node.address}")
            self.state.nodes[node.name]["ssh"] = {
                "host": conf["HostName"], "port": int(conf.get("Port", "22")), "user": conf.get("User", "root"),
                "identity": conf.get("IdentityFile", self.rec["ssh_key"]),
            }
        self.state.save()

    def _check_nics(self, node: TopologyNode) -> None:
        """Exactly the document's NICs, with the topology's MACs (never trust the Vagrantfile)."""
        found = physical_nics(self.node(node.name))
        want = {nic: node.macs[nic] for nic in (self.topology.management.interface, self.topology.flat.interface)}
        if found != want:
            raise FlatbedError(f"{node.name}: NICs are {found}, the topology says {want}")

    # --- nodes ----------------------------------------------------------------------------

    def node(self, name: str) -> Node:
        record = self.state.nodes.get(name)
        if record is None:
            raise FlatbedError(f"no node {name!r} in testbed {self.run} (nodes: {', '.join(self.state.nodes)})")
        if record["role"] == "outside":
            # The private daemon's namespace, or this host itself with an existing libvirt.
            node = LocalNode(name, "outside", self.rec.get("netns"))
            node.ensure_running()
            return node
        ssh = record.get("ssh")
        if ssh is None:
            raise NodeGoneError(f"{name}: the VM of testbed {self.run} has not come up")
        target = SSHTarget(host=ssh["host"], port=ssh["port"], user=ssh["user"], identity=ssh["identity"],
                           known_hosts=str(self.state.dir / "ssh" / "known_hosts"), netns=self.rec.get("netns"))
        return SSHNode(name, record["role"], target, lambda: self._domain_running(record["domain"]))

    def _domain_running(self, domain: str) -> bool:
        import libvirt

        if self.private and not procs.alive(self.rec.get("libvirtd_pid")):
            return False
        try:
            conn = self._connect()
        except FlatbedError:
            return False
        try:
            return bool(conn.lookupByName(domain).isActive())
        except libvirt.libvirtError:
            return False
        finally:
            conn.close()

    # --- teardown -------------------------------------------------------------------------

    def destroy(self) -> list[str]:
        removed: list[str] = []
        rec = self.state.resources.get("vagrant")
        if not rec:
            return removed
        netns = rec.get("netns")
        drop_connections(netns)
        pid = rec.get("vagrant_pid")
        if pid and procs.alive(pid):
            _killpg(pid)  # an interrupted `vagrant up`: stop it before removing what it made
            removed.append(f"vagrant process group {pid}")
        if not rec.get("private") or procs.alive(rec.get("libvirtd_pid")):
            removed += self._remove_libvirt_objects(rec)
        if rec.get("private"):
            pid = rec.get("libvirtd_pid")
            if pid and procs.alive(pid):
                PrivateLibvirtd.stop(pid)
                removed.append(f"libvirtd (pid {pid})")
            if netns and hostnet.exists(netns):
                hostnet.remove_namespace(netns)  # and its strays: qemu of a domain libvirtd did not stop
                removed.append(f"namespace {netns}")
            sockets = RUNTIME_DIR / self.run
            if sockets.exists():
                shutil.rmtree(sockets)
                removed.append(f"libvirt sockets {sockets}")
            libvirt_dir = self.state.dir / "libvirt"
            if libvirt_dir.exists():
                shutil.rmtree(libvirt_dir)
                removed.append(f"libvirt state and disks {libvirt_dir}")
        vdir = rec.get("vagrant_dir")
        if vdir and Path(vdir).exists():
            shutil.rmtree(vdir)
            removed.append(f"vagrant machine data {vdir}")
        keys = self.state.dir / "ssh"
        if keys.exists():  # the run's key pair: useless without its VMs, so not kept with the logs
            shutil.rmtree(keys)
            removed.append(f"SSH key pair {keys}")
        return removed

    def _remove_libvirt_objects(self, rec: dict[str, Any]) -> list[str]:
        import libvirt

        removed: list[str] = []
        try:
            conn = self._connect()
        except FlatbedError:
            return removed
        try:
            for name in rec.get("domains", []):
                try:
                    dom = conn.lookupByName(name)
                except libvirt.libvirtError:
                    continue
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                                  | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                                  | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
                removed.append(f"domain {name}")
            try:
                pool = conn.storagePoolLookupByName(POOL)
                pool.refresh(0)
            except libvirt.libvirtError:
                pool = None
            for name in rec.get("volumes", []) if pool else []:
                try:
                    pool.storageVolLookupByName(name).delete(0)
                    removed.append(f"volume {name}")
                except libvirt.libvirtError:
                    pass
            for name in rec.get("networks", {}).values():
                try:
                    net = conn.networkLookupByName(name)
                except libvirt.libvirtError:
                    continue
                if net.isActive():
                    net.destroy()
                net.undefine()
                removed.append(f"network {name}")
        finally:
            conn.close()
        return removed

    def leftovers(self) -> list[str]:
        rec = self.state.resources.get("vagrant")
        if not rec:
            return []
        found: list[str] = []
        netns = rec.get("netns")
        if netns and hostnet.exists(netns):
            found.append(f"namespace {netns}")
        for key in ("libvirtd_pid", "vagrant_pid"):
            if rec.get(key) and procs.alive(rec[key]):
                found.append(f"{key.split('_')[0]} pid {rec[key]}")
        for path in (self.state.dir / "libvirt", Path(rec.get("vagrant_dir", self.state.dir / "vagrant")),
                     self.state.dir / "ssh", RUNTIME_DIR / self.run):
            if path.exists():
                found.append(f"directory {path}")
        if not rec.get("private"):
            found += self._libvirt_leftovers(rec)
        return found

    def _libvirt_leftovers(self, rec: dict[str, Any]) -> list[str]:
        import libvirt

        try:
            conn = self._connect()
        except FlatbedError as e:
            return [f"libvirt at {rec.get('uri')} unreachable, cannot check: {e}"]
        found = []
        try:
            domains = {d.name() for d in conn.listAllDomains()}
            networks = {n.name() for n in conn.listAllNetworks()}
            found += [f"domain {d}" for d in rec.get("domains", []) if d in domains]
            found += [f"network {n}" for n in rec.get("networks", {}).values() if n in networks]
            try:
                volumes = set(conn.storagePoolLookupByName(POOL).listVolumes())
            except libvirt.libvirtError:
                volumes = set()
            found += [f"volume {v}" for v in rec.get("volumes", []) if v in volumes]
        finally:
            conn.close()
        return found


# --- helpers ------------------------------------------------------------------------------


# Devices backed by hardware (virtio here), as opposed to bridges, taps, lo: name and MAC.
PHYSICAL_NICS = "for d in /sys/class/net/*; do [ -e $d/device ] && echo ${d##*/} $(cat $d/address); done; true"


def physical_nics(node: Node) -> dict[str, str]:
    """The node's NICs (name -> MAC), bridges and other virtual devices left out."""
    out = node.check(PHYSICAL_NICS)
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def kvm_probe() -> kvmprobe.KvmProbe:
    """The KVM boot probe with the guest image's kernel (built or cached like every image)."""
    from flatbed.images.guest import ensure_guest

    guest = ensure_guest(progress=lambda _m: None)
    if guest.kernel is None or guest.initrd is None:
        return kvmprobe.KvmProbe(False, "no kernel to probe with", 0.0)
    return kvmprobe.probe(guest.kernel, guest.initrd)


def _vagrant_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "VAGRANT_DEFAULT_PROVIDER": "libvirt",
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1",
    }
    env.update(extra)
    return env


def _make_ssh_key(path: Path) -> str:
    """A fresh ed25519 key pair for this run; returns the public key line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private)
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        path.with_suffix(".pub").write_text(public.decode() + f" flatbed-{path.parent.parent.name}\n")
    return path.with_suffix(".pub").read_text().strip()


def _bridge_netfilter_off(bridge: str) -> None:
    """A local bridge in the host's namespace: keep its frames out of the host's iptables."""
    for key in ("nf_call_iptables", "nf_call_ip6tables", "nf_call_arptables"):
        path = Path("/sys/class/net") / bridge / "bridge" / key
        if path.exists():
            path.write_text("0")




def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    wait_until(lambda: not procs.alive(pid), timeout=10, what=f"vagrant (pid {pid}) to exit")
