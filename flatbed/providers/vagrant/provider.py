"""The VM provider: a private libvirtd in the testbed's namespace, networks, then ``vagrant up``."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from flatbed import hostnet, procs, state
from flatbed.errors import FlatbedError, NodeGoneError
from flatbed.images.base import BaseImage
from flatbed.images.box import Box, ensure_box
from flatbed.images.cache import cache_dir
from flatbed.images.guest import GuestImage
from flatbed.localnode import LocalNode
from flatbed.node import Node
from flatbed.providers.base import Provider
from flatbed.providers.vagrant import capacity, kvm, libvirt_objects
from flatbed.providers.vagrant.config import vagrant_config
from flatbed.providers.vagrant.keys import make_ssh_key
from flatbed.providers.vagrant.libvirtd import PrivateLibvirtd
from flatbed.providers.vagrant.naming import RUNTIME_DIR, RunNames
from flatbed.providers.vagrant.nics import physical_nics
from flatbed.providers.vagrant.record import VagrantNodeRecord, VagrantRecord
from flatbed.providers.vagrant.sshconfig import parse_ssh_config
from flatbed.providers.vagrant.up import vagrant_up
from flatbed.providers.vagrant.vagrantcmd import NetnsVagrant, for_run, kill_group, plugin_missing
from flatbed.sshnode import SSHNode, SSHTarget, drop_connections
from flatbed.topology import Node as TopologyNode

TOOLS = ("vagrant", "qemu-img", "mkfs.ext4", "nsenter", "unshare", "qemu-system-x86_64", "ssh")
# What the run keeps in its testbed directory besides logs (removed with it).
RUN_DIRS = ("libvirt", "vagrant", "ssh")
URI_TIMEOUT = 15  # an existing libvirt's answer to a connection (qemu+ssh:// may take seconds)


class VagrantProvider(Provider):
    name = "vagrant"
    Record = VagrantRecord
    # One VM testbed at a time unless this host has a core per VM and the memory of two (capacity.py).
    side_by_side = capacity.two_testbeds_fit()
    # flatbed's Vagrantfile attaches no management NIC (mgmt_attach = false); a box or setup that
    # does gets its eth0 lines left out by name, on the nodes that have it.
    document_omissions = ("vagrant-management-nic",)
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
            cls._plugin_checked = plugin_missing() or "ok"
        return None if cls._plugin_checked == "ok" else cls._plugin_checked

    @classmethod
    def bad_options(cls, options: dict[str, str]) -> str | None:
        """An existing libvirt (``--libvirt-uri``) must answer before anything is made in it."""
        uri = options.get("libvirt_uri")
        return libvirt_objects.unanswered(uri, URI_TIMEOUT) if uri else None

    @classmethod
    def auto_unsuitable(cls, guest: GuestImage) -> str | None:
        why = cls.unusable()
        if why:
            return why
        probe = kvm.probe_guest(guest)
        return None if probe.usable else f"KVM is not usable here ({probe.reason}); VMs would run under TCG"

    # --- names and state ------------------------------------------------------------------

    @property
    def rec(self) -> VagrantRecord:
        assert isinstance(self.state.record, VagrantRecord)
        return self.state.record

    @property
    def private(self) -> bool:
        return not self.options.get("libvirt_uri")

    @property
    def names(self) -> RunNames:
        return RunNames(self.run, self.topology.outside.name, self.topology.management.interface, self.private)

    def _libvirtd(self) -> PrivateLibvirtd:
        return PrivateLibvirtd(self.state.dir / "libvirt", self.state.dir / "logs", cache_dir() / "libvirt",
                               self.names.netns, self.names.runtime)

    @property
    def uri(self) -> str:
        return self.options.get("libvirt_uri") or self._libvirtd().uri

    def wire(self, network: str) -> tuple[str | None, str] | None:
        names = self.names
        return (names.netns if self.private else None), names.bridges[network]

    def facts(self) -> list[str]:
        rec = self.rec
        where = f"private libvirtd in namespace {rec.netns}" if rec.private else f"libvirt at {rec.uri}"
        how = "KVM" if rec.driver == "kvm" else "TCG (libvirt driver qemu)"
        return [f"VMs (vagrant-libvirt, box {rec.box or '?'}) under {how}, {where}"]

    # --- bring-up -------------------------------------------------------------------------

    def build_images(self, base: BaseImage, guest: GuestImage) -> None:
        """The box, and the KVM probe with the guest's kernel (which decides the VMs' driver)."""
        self._box = ensure_box(base, progress=lambda m: self.progress(f"images: {m}"))
        probe = kvm.probe_guest(guest)
        self._driver = "kvm" if probe.usable else "qemu"
        if probe.usable:
            self.progress(f"vagrant: VMs use KVM ({probe.reason})")
        else:
            self.progress(f"vagrant: WARNING: KVM is not usable here ({probe.reason}); the VMs run under TCG "
                          "(libvirt driver qemu) and take minutes to boot")

    def create(self, base: BaseImage) -> None:
        box, driver = getattr(self, "_box", None), getattr(self, "_driver", None)
        if box is None or driver is None:
            raise FlatbedError("vagrant provider: build_images() must come before create()")
        started = time.monotonic()
        names = self.names
        self._record(names, box, driver)
        self.state.save()  # everything named before anything is created

        if self.private:
            self._start_private_libvirt(names)
        self._create_networks(names)
        self._write_vagrant_config(names, box, driver)

        def started_up(pid: int) -> None:
            self.rec.vagrant_pid = pid
            self.state.save()

        vagrant_up(self.vagrant(), self.state.dir / "logs" / "vagrant-up.log", started_up, self.progress)
        self.rec.vagrant_pid = None
        self.state.save()
        self._record_ssh()
        for node in self.topology.stack_nodes:
            self._check_nics(node)
        self.progress(f"vagrant: {len(self.topology.stack_nodes)} VMs up in {time.monotonic() - started:.1f} s")

    def _record(self, names: RunNames, box: Box, driver: str) -> None:
        rec = self.rec
        rec.private, rec.uri, rec.box, rec.driver = self.private, self.uri, box.name, driver
        rec.netns = names.netns if self.private else None
        rec.networks, rec.bridges = names.networks, names.bridges
        rec.domains = [names.domain(n.name) for n in self.topology.stack_nodes]
        rec.volumes = [names.volume(n.name) for n in self.topology.stack_nodes]
        rec.vagrant_dir = str(self.state.dir / "vagrant")
        rec.ssh_key = str(self.state.dir / "ssh" / "id_ed25519")
        for node in self.topology.nodes:
            rec.nodes[node.name] = VagrantNodeRecord(
                role=node.role, domain=names.domain(node.name) if node.role != "outside" else None)

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
        self.rec.libvirtd_pid = daemon.start()
        self.state.save()
        daemon.wait_ready(self.rec.libvirtd_pid)
        self.progress(f"vagrant: private libvirtd in namespace {names.netns} answering after "
                      f"{time.monotonic() - watch:.1f} s")

    def _create_networks(self, names: RunNames) -> None:
        mgmt = self.topology.management
        specs = {
            "management": libvirt_objects.network_xml(names.networks["management"], names.bridges["management"],
                                                      str(mgmt.gateway), str(mgmt.cidr.netmask)),
            "flat": libvirt_objects.network_xml(names.networks["flat"], names.bridges["flat"]),
        }
        with libvirt_objects.connection(self.uri) as conn:
            for key, xml in specs.items():
                libvirt_objects.create_network(conn, xml)
                if not self.private:
                    libvirt_objects.bridge_netfilter_off(names.bridges[key])
        if self.private:
            # The document's host machine routes the flat range via the controller (§3.6: its pings
            # reach the controller, which does not forward them). Only in the testbed's own namespace.
            hostnet.add_route(names.netns, str(self.topology.flat.cidr), str(self.topology.controller.address))
        self.progress(f"vagrant: networks {', '.join(names.networks.values())} up "
                      f"({self.topology.outside.name} at {mgmt.gateway} on the management bridge)")

    def _write_vagrant_config(self, names: RunNames, box: Box, driver: str) -> None:
        key = Path(self.rec.ssh_key)
        public = make_ssh_key(key, comment=f"flatbed-{self.run}")
        vdir = Path(self.rec.vagrant_dir)
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
        return for_run(Path(self.rec.vagrant_dir), self.uri, self.rec.netns)

    def _record_ssh(self) -> None:
        """``vagrant ssh-config`` once for all machines, checked against the topology."""
        stack = self.topology.stack_nodes
        logins = parse_ssh_config(self.vagrant().ssh_config(), [n.name for n in stack], self.rec.ssh_key)
        for node in stack:
            login = logins[node.name]
            if login.host != str(node.address):
                raise FlatbedError(f"{node.name}: Vagrant reaches it at {login.host}, "
                                   f"not at its management address {node.address}")
            self.rec.nodes[node.name].ssh = login
        self.state.save()

    def _check_nics(self, node: TopologyNode) -> None:
        """Exactly the document's NICs, with the topology's MACs (never trust the Vagrantfile)."""
        found = physical_nics(self.node(node.name))
        want = {nic: node.macs[nic] for nic in (self.topology.management.interface, self.topology.flat.interface)}
        if found != want:
            raise FlatbedError(f"{node.name}: NICs are {found}, the topology says {want}")

    # --- nodes ----------------------------------------------------------------------------

    def node(self, name: str) -> Node:
        record = self.rec.nodes.get(name)
        if record is None:
            raise FlatbedError(f"no node {name!r} in testbed {self.run} (nodes: {', '.join(self.rec.nodes)})")
        if record.role == "outside":
            # The private daemon's namespace, or this host itself with an existing libvirt.
            outside = LocalNode(name, "outside", self.rec.netns)
            outside.ensure_running()
            return outside
        if record.ssh is None or record.domain is None:
            raise NodeGoneError(f"{name}: the VM of testbed {self.run} has not come up")
        ssh, domain = record.ssh, record.domain
        target = SSHTarget(host=ssh.host, port=ssh.port, user=ssh.user, identity=ssh.identity,
                           known_hosts=str(self.state.dir / "ssh" / "known_hosts"), netns=self.rec.netns)
        return SSHNode(name, record.role, target, lambda: self._domain_running(domain))

    def running(self, name: str) -> bool:
        """A handle is not enough: a VM's is handed out before anything connects to it."""
        record = self.rec.nodes.get(name)
        if record is None or record.domain is None:
            return super().running(name)
        return record.ssh is not None and self._domain_running(record.domain)

    def _domain_running(self, domain: str) -> bool:
        if self.rec.private and not procs.alive(self.rec.libvirtd_pid):
            return False
        return libvirt_objects.domain_running(self.uri, domain)

    # --- teardown -------------------------------------------------------------------------

    def destroy(self) -> list[str]:
        removed: list[str] = []
        rec = self.rec
        if not rec.vagrant_dir:
            return removed  # nothing was named yet, so nothing was created
        drop_connections(rec.netns)
        if rec.vagrant_pid and procs.alive(rec.vagrant_pid):
            kill_group(rec.vagrant_pid)  # an interrupted `vagrant up`: stop it before removing what it made
            removed.append(f"vagrant process group {rec.vagrant_pid}")
        if not rec.private or procs.alive(rec.libvirtd_pid):
            try:
                with libvirt_objects.connection(self.uri) as conn:
                    removed += libvirt_objects.remove(conn, rec)
            except FlatbedError:
                pass  # a private daemon that died took its objects with it
        if rec.private:
            if rec.libvirtd_pid and procs.alive(rec.libvirtd_pid):
                PrivateLibvirtd.stop(rec.libvirtd_pid)
                removed.append(f"libvirtd (pid {rec.libvirtd_pid})")
            if rec.netns and hostnet.exists(rec.netns):
                hostnet.remove_namespace(rec.netns)  # and its strays: qemu of a domain libvirtd did not stop
                removed.append(f"namespace {rec.netns}")
        removed += _remove_run_dirs(self.run, self.state.dir)
        return removed

    def leftovers(self) -> list[str]:
        rec = self.rec
        if not rec.vagrant_dir:
            return []
        found: list[str] = []
        if rec.netns and hostnet.exists(rec.netns):
            found.append(f"namespace {rec.netns}")
        for what, pid in (("libvirtd", rec.libvirtd_pid), ("vagrant", rec.vagrant_pid)):
            if pid and procs.alive(pid):
                found.append(f"{what} pid {pid}")
        found += [f"directory {path}" for path in _run_dirs(self.run, self.state.dir) if path.exists()]
        if not rec.private:
            try:
                with libvirt_objects.connection(rec.uri) as conn:
                    found += libvirt_objects.present(conn, rec)
            except FlatbedError as e:
                found.append(f"libvirt at {rec.uri} unreachable, cannot check: {e}")
        return found

    # --- run-tagged resources without a state file ------------------------------------------

    @classmethod
    def scan(cls) -> dict[str, list[str]]:
        """Private libvirtd runtime directories, and run directories whose state file is gone.
        (Domains in an existing libvirt are found only through a state file: its URI is there.)"""
        found: dict[str, list[str]] = {}
        if RUNTIME_DIR.is_dir():
            for entry in sorted(RUNTIME_DIR.iterdir()):
                if state.is_run_id(entry.name):
                    found.setdefault(entry.name, []).append(f"runtime directory {entry}")
        root = state.state_root()
        for entry in sorted(root.iterdir()) if root.is_dir() else []:
            if state.is_run_id(entry.name) and not (entry / "state.json").exists():
                found.setdefault(entry.name, []).extend(
                    f"directory {path}" for path in _run_dirs(entry.name, entry)[:-1] if path.exists())
        return {run: items for run, items in found.items() if items}

    @classmethod
    def sweep(cls, run_id: str) -> list[str]:
        removed = []
        pidfile = RUNTIME_DIR / run_id / "libvirtd.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid and procs.alive(pid):
            PrivateLibvirtd.stop(pid)
            removed.append(f"libvirtd (pid {pid})")
        testbed = state.state_root() / run_id
        if (testbed / "state.json").exists():  # a state file's testbed is its destroy's business
            return removed
        return removed + _remove_run_dirs(run_id, testbed)

    @classmethod
    def recorded_in(cls, run_id: str) -> Path | None:
        """A private libvirtd's environment names its directories under the run's state root."""
        for ns in hostnet.list_namespaces(f"{run_id}-"):
            for pid in hostnet.pids_in(ns):
                try:
                    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                for item in environ:
                    if item.startswith(b"FB_ETC="):  # <state root>/<run>/libvirt/etc
                        etc = Path(item[len(b"FB_ETC="):].decode(errors="replace"))
                        if etc.parent.parent.name == run_id:
                            return etc.parents[2]
        return None


def _run_dirs(run_id: str, testbed_dir: Path) -> list[Path]:
    """The run's directories besides its logs (the runtime directory last)."""
    return [testbed_dir / sub for sub in RUN_DIRS] + [RUNTIME_DIR / run_id]


def _remove_run_dirs(run_id: str, testbed_dir: Path) -> list[str]:
    """Remove them; the key pair too (useless without its VMs, so not kept with the logs)."""
    removed = []
    for path in _run_dirs(run_id, testbed_dir):
        if path.exists():
            shutil.rmtree(path)
            removed.append(f"directory {path}")
    return removed
