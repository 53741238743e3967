"""The ``flatbed`` command: your hands on a live testbed.

Exit codes: 0 ok; 1 a failure (unhealthy, leaks, a host not ready, a command that failed); 2 a
usage error (the command line, a topology file, a testbed that does not exist).

Works across processes through the testbed's state file: ``flatbed up`` (or a pytest run that
kept its testbed) in one shell, ``flatbed status``/``exec``/``ssh``/``console`` in another,
``flatbed down`` at the end. ``flatbed clean`` removes what killed runs left behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from flatbed import ownership, providers, state
from flatbed.cloud import BootFailed, Cloud, NoSuchGuest
from flatbed.errors import FlatbedError, UsageError
from flatbed.testbed import Testbed
from flatbed.topology import DEFAULT_TOPOLOGY
from flatbed.topology import load as load_topology

EPILOG = """\
examples:
  flatbed up                                   # the document's topology on the default provider
  flatbed status                               # nodes, services, guests (IP, lease, compute)
  flatbed ssh controller-1                     # a shell on a node
  flatbed boot cirros && flatbed ssh cirros    # a guest, and a shell on it through the controller
  flatbed console cirros                       # follow its console.log
  flatbed collect /tmp/bundle                  # the artifact bundle
  flatbed down                                 # remove it, leaving nothing
  flatbed clean                                # remove what killed runs left behind

With several testbeds up, choose one with --testbed RUN_ID (before or after the verb).
"""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _verb(sub: argparse._SubParsersAction, name: str, summary: str, description: str, examples: str,
          *, testbed: bool = True) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=summary, description=description,
                            epilog="examples:\n" + examples.rstrip() + "\n",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    if testbed:
        # Also after the verb; SUPPRESS keeps the global option's value when it is not given here.
        parser.add_argument("--testbed", metavar="RUN_ID", default=argparse.SUPPRESS,
                            help="which testbed, when several are up")
    return parser


def _force(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--force", action="store_true", help=f"{what} (refused without it)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="flatbed", description=__doc__.splitlines()[0], epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY,
                        help="topology file for `up` (default: %(default)s)")
    parser.add_argument("--testbed", metavar="RUN_ID", help="which testbed, when several are up")
    parser.add_argument("--version", action="version", version=f"flatbed {version()}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    up = _verb(sub, "up", "build images if needed, boot and provision a testbed",
               "Build images if needed, boot every node of the topology and provision it. The testbed stays "
               "up until `flatbed down`; pytest runs can use it with --reuse.",
               "  flatbed up\n  flatbed --topology topologies/alt.toml up --provider nspawn", testbed=False)
    up.add_argument("--provider", choices=providers.CHOICES, default="auto")
    up.add_argument("--json", action="store_true", help="print the testbed (run id, nodes...) as JSON")
    up.add_argument("--mirror", help="Debian mirror for the base image (default: the host's apt source)")
    up.add_argument("--cirros-image", type=Path, help="a real cirros disk image to boot instead of ours")
    up.add_argument("--cirros-password", help="the cirros user's password in --cirros-image (default: 0.3's "
                                              "'cubswin:)'; cirros 0.4 and later: gocubsgo)")
    up.add_argument("--libvirt-uri", default=os.environ.get("FLATBED_LIBVIRT_URI"),
                    help="vagrant provider: use this existing libvirt instead of a private libvirtd "
                         "(default: $FLATBED_LIBVIRT_URI)")

    st = _verb(sub, "status", "nodes, services and guests of the testbed (a table, or a picture)",
               "Show the live testbed: every node with its state and services, every guest with status, IP, "
               "MAC, lease, hostsfile entry and compute, and the health verdict. Exits 1 when unhealthy.",
               "  flatbed status\n  flatbed status --svg testbed.svg    # nodes, NICs, bridges, guests (graphviz)")
    st.add_argument("--svg", type=Path, metavar="FILE", help="also draw the live testbed into FILE with graphviz")
    st.add_argument("--json", action="store_true", help="the same as JSON: run id, nodes, guests, health")

    ex = _verb(sub, "exec", "run a command on a node",
               "Run a command as root on a node (no terminal) and exit with its exit code. One argument is a "
               "shell line (pipes work); several are an argv.",
               "  flatbed exec controller-1 -- iptables -t nat -S\n"
               "  flatbed exec compute-1 -- 'virsh list --all | tail -n +3'\n"
               "  flatbed exec outside -- ping -c1 192.168.56.200")
    ex.add_argument("node")
    ex.add_argument("command", nargs="*", help="the command, after --")

    sh = _verb(sub, "ssh", "a shell (or a command) on a node, or on a guest through the controller",
               "TARGET is a node (a shell on it, with a terminal: nsenter on containers, ssh on VMs) or a guest "
               "(SSH from the host through the controller to the guest as the image's user, cirros with "
               "password cubswin:) by default, or with a key). After --, a command to run instead of a shell.",
               "  flatbed ssh controller-1\n  flatbed ssh compute-1 -- virsh list\n"
               "  flatbed ssh cirros\n  flatbed ssh cirros --wait 60 -- ip addr\n"
               "  flatbed ssh cirros -i ~/.ssh/id_rsa -l cirros")
    sh.add_argument("target", help="a node name or a guest name")
    sh.add_argument("command", nargs="*", help="a command to run, after --")
    sh.add_argument("-l", "--user", help="guest login (default: the image's, cirros)")
    sh.add_argument("-i", "--identity", metavar="KEY", help="guest login with this private key")
    sh.add_argument("--password", help="guest password (default: the image's, cubswin:))")
    sh.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                    help="keep trying to connect to a guest for this long (its sshd may be starting)")

    co = _verb(sub, "console", "follow a guest's console.log on its compute",
               "Print a guest's console log (the serial port qemu writes to <instances_path>/<instance>/"
               "console.log on its compute) and follow it until Ctrl-C.",
               "  flatbed console cirros\n  flatbed console cirros --no-follow | grep -i lease")
    co.add_argument("guest")
    co.add_argument("--no-follow", action="store_true", help="print what is there and exit")

    bo = _verb(sub, "boot", "boot a guest (nova boot on the controller)",
               "Boot a guest with `nova boot --image IMAGE --flavor FLAVOR [--availability-zone nova:HOST] NAME` "
               "on the controller and show where it runs.",
               "  flatbed boot cirros\n  flatbed boot vm2 --compute compute-2")
    bo.add_argument("name")
    bo.add_argument("--image", default="cirros")
    bo.add_argument("--flavor", default="1")
    bo.add_argument("--compute", metavar="HOST", help="pin to this compute (availability zone nova:HOST)")
    _force(bo, "boot on a testbed that another run is using")

    de = _verb(sub, "delete", "delete guests (nova delete on the controller) and wait for their addresses",
               "Delete guests with `nova delete` on the controller and wait until each one's fixed IP is back "
               "in the pool (with force_dhcp_release, at once).",
               "  flatbed delete cirros\n  flatbed delete vm1 vm2")
    de.add_argument("names", nargs="+", metavar="name")
    _force(de, "delete on a testbed that another run is using")

    cl = _verb(sub, "collect", "write the artifact bundle of the testbed into a directory",
               "Write what one needs to read a failure: every node's iptables-save, ebtables, ip a, route -n, "
               "brctl show; the controller's hostsfile, dnsmasq syslog lines and nova list; every guest's "
               "console.log and libvirt.xml; the status table. The suite writes the same bundle for a "
               "failing test.",
               "  flatbed collect /tmp/bundle && less /tmp/bundle/MANIFEST.txt")
    cl.add_argument("dir", type=Path)

    dn = _verb(sub, "down", "remove a testbed and everything it created",
               "Stop the nodes and remove every namespace, cgroup, overlay and file of the testbed (its logs stay "
               "in the state directory). A testbed that a live run uses is refused (without --testbed, only "
               "unused ones are chosen from). Once started, the removal completes: the first Ctrl-C only says "
               "so, a second one aborts it and leaves it for `flatbed clean`.",
               "  flatbed down\n  flatbed down --testbed fb1a2b3c")
    _force(dn, "remove a testbed that a live run uses")

    cn = _verb(sub, "clean", "remove every leftover of flatbed runs (killed bring-ups, dead testbeds)",
               "Remove testbeds whose bring-up was killed or failed, whose nodes stopped or whose state file "
               "this flatbed cannot read, and every resource tagged with a flatbed run id that no state file "
               "accounts for (namespaces fbXXXXXX-*, mounts under the state root, and what each provider tags: "
               "cgroups flatbed/fbXXXXXX-* and overlays of containers, a private libvirtd and its directories). "
               "Lists what it removed. Testbeds that are up, and runs recorded in other state roots, are left "
               "alone; nothing untagged is touched.",
               "  flatbed clean\n  flatbed clean --dry-run\n"
               "  flatbed clean --kept-older-than 12h --artifacts-older-than 7d   # what earlier nights kept",
               testbed=False)
    cn.add_argument("-n", "--dry-run", action="store_true", help="list what would be removed, remove nothing")
    cn.add_argument("--kept-older-than", metavar="AGE", type=_age,
                    help="also remove testbeds kept up for longer than AGE (12h, 2d...), unless their process "
                         "still uses them")
    cn.add_argument("--artifacts-older-than", metavar="AGE", type=_age,
                    help="also remove session artifact directories (failing tests' bundles) older than AGE (7d...), "
                         "unless their session still runs; nothing else ever removes them")
    _force(cn, "also remove what a live run uses (creating, failed or removing)")

    ls = _verb(sub, "list", "list the testbeds on this host, and removed ones that left failure artifacts",
               "List the testbeds recorded in the state root, with provider, status and topology; then the removed "
               "testbeds whose failing tests left artifact bundles (in session directories under "
               "$FLATBED_ARTIFACTS, default /var/lib/flatbed/artifacts), with those tests.",
               "  flatbed list\n  flatbed list --json | jq -r '.testbeds[].run_id'", testbed=False)
    ls.add_argument("--json", action="store_true", help="as JSON")
    ck = _verb(sub, "check", "is this host ready for testbeds? a table of checks with verdicts and fixes",
               "Check what testbeds need on this host: root, the container tools and cgroup v2; for VMs Vagrant and "
               "vagrant-libvirt, libvirt answering, KVM really booting a kernel, nested virtualization for guests; "
               "memory and disk for one testbed per worker; the image cache. Prints each check's verdict and, "
               "when it is not ok, the fix. Exits 1 when the chosen provider (auto: the one the suite would "
               "pick) cannot run.",
               "  flatbed check\n  flatbed check --provider vagrant -n 2    # a KVM runner for pytest -n 2",
               testbed=False)
    ck.add_argument("--provider", choices=providers.CHOICES, default="auto")
    ck.add_argument("-n", "--workers", type=int, default=1, metavar="N",
                    help="testbeds at once, as with pytest -n N (default: %(default)s)")
    ck.add_argument("--libvirt-uri", default=os.environ.get("FLATBED_LIBVIRT_URI"),
                    help="vagrant provider: ask this existing libvirt instead of a private libvirtd")
    ck.add_argument("--json", action="store_true", help="the checks as JSON")
    _verb(sub, "images", "build the node and guest images if needed, and list the cache",
          "Build (or find cached) the base root, the cirros-compatible guest and that guest as a cirros-layout "
          "disk image (what the suite tests --cirros-image with), then list the image cache.",
          "  flatbed images", testbed=False)
    lk = _verb(sub, "leaks", "list resources of flatbed runs left on this host (exit 1 if any)",
               "List resources tagged with a flatbed run id on the whole host (namespaces, mounts, state files, "
               "and each provider's: cgroups, overlays, runtime directories...). "
               "Exits 1 when there are any, so CI can assert a clean host. With --session, only the testbeds of "
               "that pytest session (its artifacts directory's session.json): a testbed it kept is not a leak.",
               "  flatbed leaks\n  flatbed leaks --session /var/lib/flatbed/artifacts/nightly-42", testbed=False)
    lk.add_argument("--session", metavar="DIR|ID", help="only this session's testbeds (its artifacts directory)")
    return parser


# --- verbs ------------------------------------------------------------------------------------

def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("flatbed")
    except PackageNotFoundError:
        return "unknown (not installed)"


def in_session(run_id: str, topology: str | None, outcome: str | None = None) -> None:
    """Record a testbed made or removed by this command in the pytest session that started it
    (``$FLATBED_SESSION``: a test driving the CLI), for the session's leaks check."""
    where = os.environ.get("FLATBED_SESSION")
    if not where:
        return
    from flatbed.artifacts import Session

    session = Session.create(Path(where))
    if topology is not None:
        session.add_testbed(run_id, topology, "cli")
    if outcome is not None:
        session.set_outcome(run_id, outcome)


def cmd_up(args: argparse.Namespace) -> int:
    topo = load_topology(args.topology)
    bed = Testbed.up(topo, args.provider, mirror=args.mirror, cirros_image=args.cirros_image,
                     cirros_password=args.cirros_password, provider_options={"libvirt_uri": args.libvirt_uri})
    bed.give_back()  # kept for the user: nobody uses it until a verb or a --reuse run takes it
    in_session(bed.run_id, topo.name)
    if args.json:
        import json

        from flatbed import machine

        print(json.dumps(machine.up(bed), indent=2))
        return 0
    print(f"testbed {bed.run_id} is up ({topo.name}, {bed.state.provider}); nodes: {', '.join(topo.names)}")
    print(f"  flatbed --testbed {bed.run_id} status")
    print(f"  flatbed --testbed {bed.run_id} ssh {topo.controller.name}")
    print(f"  pytest e2e/ --reuse={bed.run_id}")
    print(f"  flatbed --testbed {bed.run_id} down")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from flatbed import health, status

    bed = Testbed.attach(args.testbed)
    snap = status.gather(bed, network=args.svg is not None)
    if args.json:
        import json

        from flatbed import machine

        print(json.dumps(machine.status(snap), indent=2))
    else:
        sys.stdout.write(status.render(snap))
    if args.svg:
        topo = bed.topology
        status.write_svg(status.to_dot(snap, topo.management.interface, topo.flat.interface), args.svg)
        print(f"picture: {args.svg}", file=sys.stderr if args.json else sys.stdout)
    return 0 if health.verdict(snap.checks) is None else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; everything after the first ``--`` is the command of exec/ssh, verbatim."""
    argv = list(sys.argv[1:] if argv is None else argv)
    tail: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, tail = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "command"):
        args.command = list(args.command) + tail
    elif tail:
        parser.error(f"{args.verb} takes no command after --")
    return args


def cmd_exec(args: argparse.Namespace) -> int:
    command = args.command
    if not command:
        raise UsageError("exec: no command given (flatbed exec NODE -- CMD ...)")
    bed = Testbed.attach(args.testbed)
    # One argument is a shell line (pipes work); several are an argv.
    result = bed.node(args.node).run(command[0] if len(command) == 1 else command, timeout=3600)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.rc


def cmd_ssh(args: argparse.Namespace) -> int:
    command = args.command
    bed = Testbed.attach(args.testbed)
    if args.target in bed.topology.names:
        from flatbed.terminal import run_in_pty

        argv = command if command else ["/bin/bash", "-l"]
        if len(command) == 1:
            argv = ["/bin/sh", "-c", command[0]]
        node = bed.node(args.target)
        return run_in_pty(node.host_argv(argv, tty=True), relayed=node.relays_terminal)
    return _ssh_guest(bed, args, command)


def _ssh_guest(bed: Testbed, args: argparse.Namespace, command: list[str]) -> int:
    from flatbed import guestssh  # paramiko loads only for a guest shell

    cloud = Cloud(bed)
    try:
        guest = cloud.guest(args.target)
    except NoSuchGuest:
        raise FlatbedError(f"ssh: {args.target!r} is neither a node ({', '.join(bed.topology.names)}) nor a guest "
                           f"of testbed {bed.run_id}") from None
    if not guest.ip:
        raise FlatbedError(f"ssh: guest {guest.name} has no address (status {guest.status})")
    user, password = cloud.login()
    client = guestssh.connect(bed.controller, guest.ip, args.user or user,
                              password=None if args.identity else (args.password or password),
                              key_file=args.identity, wait=args.wait)
    try:
        if command:
            rc, out, err = guestssh.run(client, command)
            sys.stdout.write(out)
            sys.stderr.write(err)
            return rc
        return guestssh.shell(client)
    finally:
        client.close()


def cmd_console(args: argparse.Namespace) -> int:
    bed = Testbed.attach(args.testbed)
    guest = Cloud(bed).guest(args.guest)
    if not guest.compute:
        raise FlatbedError(f"console: guest {guest.name} has no compute (status {guest.status})")
    path, node = guest.console_log, guest.node
    if args.no_follow:
        sys.stdout.write(node.read_file(path))
        return 0
    print(f"[{guest.name}: {path} on {guest.compute}; Ctrl-C to stop]", file=sys.stderr, flush=True)
    # Its own process group: on Ctrl-C/SIGTERM the whole group goes, the tail that nsenter forked
    # inside the node included (killing nsenter alone would leave it running there).
    follow = subprocess.Popen(node.host_argv(["tail", "-n", "+1", "-F", path]), process_group=0)
    try:
        return follow.wait()
    except KeyboardInterrupt:
        os.killpg(follow.pid, signal.SIGTERM)
        follow.wait()
        return 0


def cmd_boot(args: argparse.Namespace) -> int:
    cloud = Cloud(Testbed.attach(args.testbed, unless_in_use="--force to boot on it anyway", force=args.force),
                  derive=False)  # a user's boot: nothing to derive
    try:
        guest = cloud.boot(args.name, image=args.image, flavor=args.flavor, compute=args.compute)
    except BootFailed as e:
        raise FlatbedError(f"{e} (it stays for a look: flatbed delete {e.uuid})") from None
    print(f"{guest.name}: {guest.status} on {guest.compute} as {guest.instance_name}, {guest.ip} ({guest.mac}); "
          f"id {guest.uuid}")
    print(f"  flatbed console {guest.name}      # follow its boot")
    print(f"  flatbed ssh {guest.name} --wait 60")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    cloud = Cloud(Testbed.attach(args.testbed, unless_in_use="--force to delete on it anyway", force=args.force))
    for name in args.names:
        guest = cloud.delete(name)
        back = "back in the pool" if cloud.releases_on_delete else "returns when its lease expires"
        print(f"{guest.name}: deleted ({guest.instance_name} on {guest.compute}); {guest.ip} {back}")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from flatbed.collect import collect

    written = collect(Testbed.attach(args.testbed), args.dir)
    print(f"wrote {len(written)} files to {args.dir} (see {args.dir / 'MANIFEST.txt'})")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    from flatbed.images import list_images
    from flatbed.images.base import ensure_base
    from flatbed.images.cirros_disk import ensure_cirros_disk
    from flatbed.images.guest import ensure_guest

    ensure_base()
    # The cirros-layout disk is what the suite tests --cirros-image with (e2e/test_27).
    ensure_cirros_disk(ensure_guest())
    for image in list_images():
        print(f"{image.kind:6} {image.hash16}  {image.size / 2**20:7.0f} MiB  "
              f"{'complete' if image.complete else 'INCOMPLETE'}  {image.path}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import json

    from flatbed import readiness

    if args.workers < 1:
        raise UsageError(f"check: --workers must be at least 1, not {args.workers}")
    report = readiness.evaluate(args.provider, workers=args.workers, libvirt_uri=args.libvirt_uri)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        sys.stdout.write(readiness.render(report))
    return 0 if report.ok else 1


def cmd_leaks(args: argparse.Namespace) -> int:
    from flatbed.leftovers import scan

    if args.session:
        return session_leaks(args.session)
    found = scan()
    for item in found:
        print(item)
    if not found:
        print("no flatbed resources on this host")
    return 1 if found else 0


def session_leaks(where: str) -> int:
    from flatbed import artifacts, leftovers

    session = artifacts.Session.find(where)
    record = session.load()
    beds, unreadable = state.scan_testbeds()
    recorded = {st.run_id: st.status for st in beds} | {u.run_id: "unreadable" for u in unreadable}
    leaks, notes = artifacts.session_leaks(record, leftovers.tagged(), recorded)
    for line in leaks + notes:
        print(line)
    if not leaks:
        print(f"no leaks of session {record.session} ({len(record.testbeds)} testbeds)")
    return 1 if leaks else 0


def cmd_list(args: argparse.Namespace) -> int:
    from flatbed import artifacts, machine

    beds, unreadable = state.scan_testbeds()
    records = []
    for session in artifacts.sessions():
        try:
            records.append((str(session.path), session.load()))
        except FlatbedError:
            continue  # a session directory being written or broken: not this listing's business
    removed = machine.removed_with_artifacts(records, {st.run_id for st in beds})
    if args.json:
        import json

        print(json.dumps(machine.listing(beds, unreadable, removed), indent=2))
        return 0
    if not beds and not unreadable:
        print("no testbeds")
    for st in beds:
        print(f"{st.run_id}  {st.provider:8} {st.status:9} {st.topology_path}")
    for problem in unreadable:
        print(f"{problem.run_id}  {'?':8} {'unreadable':9} {problem}")
    if removed:
        print("\nremoved testbeds with failure artifacts:")
    for gone in removed:
        print(f"{gone['run_id']}  {gone['outcome']:8} {gone['topology']:12} {gone['session']}")
        print("\n".join(f"  failed: {test}" for test in gone["failed"]))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    bed = Testbed.attach(args.testbed, unless_in_use=ownership.FORCE_REMOVE, force=args.force)
    for item in bed.down():
        print(f"removed {item}")
    in_session(bed.run_id, None, "removed")
    return 0


def _age(text: str) -> float:
    from flatbed.artifacts import parse_age

    try:
        return parse_age(text)
    except FlatbedError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_clean(args: argparse.Namespace) -> int:
    from flatbed.clean import clean

    report = clean(dry_run=args.dry_run, force=args.force, progress=lambda m: print(f"[flatbed] {m}", file=sys.stderr),
                   kept_older_than=args.kept_older_than, artifacts_older_than=args.artifacts_older_than)
    print("\n".join(report.lines(args.dry_run)))
    return 0


VERBS = {"up": cmd_up, "status": cmd_status, "exec": cmd_exec, "ssh": cmd_ssh, "console": cmd_console,
         "boot": cmd_boot, "delete": cmd_delete, "collect": cmd_collect, "down": cmd_down, "clean": cmd_clean,
         "list": cmd_list, "images": cmd_images, "check": cmd_check, "leaks": cmd_leaks}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
    except UsageError as e:  # the command line or an input file is wrong; one line per problem
        print("\n".join(f"flatbed: error: {line}" for line in str(e).splitlines()), file=sys.stderr)
        return 2
    except FlatbedError as e:  # a command failed
        print(f"flatbed: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("flatbed: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `flatbed status | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # still one line; the traceback on request
        if os.environ.get("FLATBED_DEBUG"):
            raise
        print(f"flatbed: error: {type(e).__name__}: {e} (FLATBED_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
