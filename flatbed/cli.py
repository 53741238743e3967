"""The ``flatbed`` command: bring a testbed up, run commands on its nodes, take it down.

Works across processes through the testbed's state file: ``flatbed up`` in one shell,
``flatbed exec controller-1 -- brctl show`` in another, ``flatbed down`` at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from flatbed import providers, state
from flatbed.errors import FlatbedError
from flatbed.testbed import Testbed
from flatbed.topology import DEFAULT_TOPOLOGY
from flatbed.topology import load as load_topology

EPILOG = """\
examples:
  flatbed up                                   # the document's topology on the default provider
  flatbed --topology topologies/alt.toml up --provider nspawn
  flatbed exec controller-1 -- iptables -t nat -S
  flatbed exec compute-1 -- virsh list --all
  flatbed list
  flatbed down
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flatbed", description=__doc__.splitlines()[0], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY,
                        help="topology file (default: %(default)s)")
    parser.add_argument("--testbed", metavar="RUN_ID", help="which testbed, when several are up")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    up = sub.add_parser("up", help="build images if needed, boot and provision a testbed",
                        description="Build images if needed, boot every node of the topology and provision it. "
                                    "The testbed stays up until `flatbed down`.",
                        epilog="example:\n  flatbed up --provider nspawn",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    up.add_argument("--provider", choices=providers.CHOICES, default="auto")
    up.add_argument("--mirror", help="Debian mirror for the base image (default: the host's apt source)")
    up.add_argument("--cirros-image", type=Path, help="a real cirros disk image to boot instead of ours")
    up.add_argument("--libvirt-uri", default=os.environ.get("FLATBED_LIBVIRT_URI"),
                    help="vagrant provider: use this existing libvirt instead of a private libvirtd "
                         "(default: $FLATBED_LIBVIRT_URI)")

    ex = sub.add_parser("exec", help="run a command on a node",
                        description="Run a command as root on a node and exit with its exit code.",
                        epilog="example:\n  flatbed exec controller-1 -- ps aux\n"
                               "  flatbed exec outside -- ping -c1 192.168.56.200",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("node")
    ex.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")

    sub.add_parser("images", help="build the node and guest images if needed, and list the cache",
                   description="Build (or find cached) the base root and the cirros-compatible guest, then list "
                               "the image cache.")
    sub.add_parser("leaks", help="list resources of flatbed runs left on this host (exit 1 if any)",
                   description="List namespaces, cgroups, mounts and state files tagged with a flatbed run id. "
                               "Exits 1 when there are any, so CI can assert a clean host.")
    sub.add_parser("list", help="list the testbeds on this host",
                   description="List the testbeds recorded on this host, with provider, topology and status.")
    sub.add_parser("down", help="remove a testbed and everything it created",
                   description="Stop the nodes and remove every namespace, cgroup, overlay and file of the testbed.",
                   epilog="example:\n  flatbed down --testbed fb1a2b3c",
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def cmd_up(args: argparse.Namespace) -> int:
    topo = load_topology(args.topology)
    bed = Testbed.up(topo, args.provider, mirror=args.mirror, cirros_image=args.cirros_image,
                     provider_options={"libvirt_uri": args.libvirt_uri})
    print(f"testbed {bed.run_id} is up ({topo.name}, {bed.state.provider}); nodes: {', '.join(topo.names)}")
    print(f"  flatbed exec {topo.controller.name} -- nova list")
    print(f"  flatbed --testbed {bed.run_id} down")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise FlatbedError("exec: no command given (flatbed exec NODE -- CMD ...)")
    bed = Testbed.attach(args.testbed)
    # One argument is a shell line (pipes work); several are an argv.
    result = bed.node(args.node).run(command[0] if len(command) == 1 else command, timeout=3600)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.rc


def cmd_images(args: argparse.Namespace) -> int:
    from flatbed.images import list_images
    from flatbed.images.base import ensure_base
    from flatbed.images.guest import ensure_guest

    ensure_base()
    ensure_guest()
    for image in list_images():
        print(f"{image.kind:6} {image.hash16}  {image.size / 2**20:7.0f} MiB  "
              f"{'complete' if image.complete else 'INCOMPLETE'}  {image.path}")
    return 0


def cmd_leaks(args: argparse.Namespace) -> int:
    from flatbed.leftovers import scan

    found = scan()
    for item in found:
        print(item)
    if not found:
        print("no flatbed resources on this host")
    return 1 if found else 0


def cmd_list(args: argparse.Namespace) -> int:
    beds = state.list_testbeds()
    if not beds:
        print("no testbeds")
    for st in beds:
        print(f"{st.run_id}  {st.provider:8} {st.status:9} {st.topology_path}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    bed = Testbed.attach(args.testbed)
    for item in bed.down():
        print(f"removed {item}")
    return 0


VERBS = {"up": cmd_up, "exec": cmd_exec, "images": cmd_images, "leaks": cmd_leaks, "list": cmd_list,
         "down": cmd_down}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so an interrupted `up` removes what it created. Only in this
    # process: helpers forked by pyroute2 inherit the handler and must just exit.
    main_pid = os.getpid()

    def on_term(signum: int, frame: object) -> None:
        if os.getpid() != main_pid:
            os._exit(128 + signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return VERBS[args.verb](args)
    except FlatbedError as e:
        print(f"flatbed: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flatbed: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
