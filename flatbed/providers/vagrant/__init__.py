"""Nodes as libvirt VMs, brought up by the project's ``Vagrantfile`` through vagrant-libvirt.

Layout of one testbed ``<run>`` (default, hermetic mode; names in :mod:`.naming`):

- namespace ``<run>-<outside>`` (the topology's outside host): a private libvirtd
  (:mod:`.libvirtd`), the two libvirt networks' bridges and the VMs' taps; the management bridge
  holds the topology's gateway address, so this namespace *is* the document's host machine.
  ``vagrant`` runs in it too (:mod:`.vagrantcmd`, :mod:`.up`), and SSH connects from it.
- libvirt networks ``<run>-mgmt`` (node addresses, no DHCP, no DNS, no forwarding) and
  ``<run>-flat`` (no IP at all, no forwarding), created by flatbed before ``vagrant up`` so that
  parallel machines never race to create them (vagrant-libvirt #104); Vagrant only attaches
  (:mod:`.libvirt_objects`).
- domains ``<run>-<node>`` from the box (:mod:`flatbed.images.box`), exactly two NICs each
  (``mgmt_attach = false``), disks ``<run>-<node>.img`` in the private daemon's pool; their
  kernel command lines and the Vagrantfile's JSON in :mod:`.config`, the run's key pair from
  :mod:`.keys`, the logins from ``vagrant ssh-config`` (:mod:`.sshconfig`).

With ``libvirt_uri`` (``--libvirt-uri``) an existing libvirt is used instead: the networks and
domains are created there under the same names, the outside host is this host (the management
bridge's address), and bridge netfilter is switched off on the two bridges when they are local.

Every name is recorded in the state file (:mod:`.record`) before it is created; teardown removes
exactly those by name through libvirt (which also covers machines an interrupted ``vagrant up``
had not recorded yet), then the daemon and the namespace. Whether VMs use KVM is decided by a
boot probe (:mod:`.kvm`).
"""

from flatbed.providers.vagrant.nics import physical_nics
from flatbed.providers.vagrant.provider import VagrantProvider

__all__ = ["VagrantProvider", "physical_nics"]
