"""The ``nova`` CLI on the controller: novaclient's commands and tables, talking to nova-api.

    nova boot --image IMAGE --flavor FLAVOR [--key-name KEY] [--availability-zone nova:HOST]
              [--user-data FILE] NAME
    nova list | show SERVER | delete SERVER | console-log SERVER
    nova image-list | flavor-list | keypair-add NAME [--pub-key FILE] | keypair-list | keypair-delete NAME

nova-api is reached at ``<metadata_host>:<osapi_compute_listen_port>`` of the flagfile (the
controller that runs it). Errors are one line, ``ERROR: ...``, and exit status 1, as novaclient's.
"""

from __future__ import annotations

import argparse
import base64
import sys
from collections.abc import Sequence
from typing import Any

from nova import flags, rpc
from nova.cmd import secgroup

API_TIMEOUT = 60.0


class CommandError(Exception):
    """What the CLI prints after ``ERROR:``."""


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """prettytable as novaclient printed it: centred headers, left-aligned cells."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [rule, "|" + "|".join(f" {h.center(w)} " for h, w in zip(headers, widths, strict=True)) + "|", rule]
    for r in rows:
        out.append("|" + "|".join(f" {c.ljust(w)} " for c, w in zip(r, widths, strict=True)) + "|")
    out.append(rule)
    return "\n".join(out)


def _text(value: Any) -> str:
    """novaclient printed Python values: None as ``None``."""
    return "None" if value is None else str(value)


def networks(server: dict[str, Any]) -> str:
    """The Networks cell of ``nova list``: ``<label>=<ip>`` (the document's ``novanetwork=10.0.0.2``)."""
    return f"{server['label']}={server['address']}" if server.get("address") else ""


def iso_time(timestamp: str | None) -> str:
    return f"{timestamp.replace(' ', 'T')}Z" if timestamp else ""


def show(server: dict[str, Any]) -> str:
    """``nova show`` / ``nova boot``: the Property | Value table, properties sorted."""
    props = {
        "OS-EXT-SRV-ATTR:host": _text(server["host"]),
        "OS-EXT-SRV-ATTR:instance_name": server["name"],
        "OS-EXT-STS:power_state": _text(server.get("power_state")),
        "OS-EXT-STS:task_state": _text(server["task_state"]),
        "OS-EXT-STS:vm_state": server["vm_state"],
        "accessIPv4": "",
        "accessIPv6": "",
        "created": iso_time(server["created_at"]),
        "flavor": server["flavor"],
        "id": server["uuid"],
        "image": server["image_name"],
        "key_name": _text(server["key_name"]),
        "metadata": "{}",
        "name": server["display_name"],
        "status": server["status"],
        "updated": iso_time(server["updated_at"]),
    }
    if server.get("address"):
        props[f"{server['label']} network"] = server["address"]
    if server.get("fault"):
        props["fault"] = server["fault"]
    return table(["Property", "Value"], [[k, v] for k, v in sorted(props.items())])


def server_list(servers: list[dict[str, Any]]) -> str:
    return table(["ID", "Name", "Status", "Networks"],
                 [[s["uuid"], s["display_name"], s["status"], networks(s)] for s in servers])


def image_list(images: list[dict[str, Any]]) -> str:
    return table(["ID", "Name", "Status", "Server"], [[i["id"], i["name"], i["status"], ""] for i in images])


def flavor_list(flavors: list[dict[str, Any]]) -> str:
    # Essex's API gave swap 0 as "" (views/flavors.py: flavor["swap"] or "").
    return table(["ID", "Name", "Memory_MB", "Swap", "Local_GB", "VCPUs", "RXTX_Factor"],
                 [[f["flavorid"], f["name"], str(f["memory_mb"]), str(f["swap"] or ""), str(f["local_gb"]),
                   str(f["vcpus"]), str(f["rxtx_factor"])] for f in flavors])


def keypair_list(keypairs: list[dict[str, Any]]) -> str:
    return table(["Name", "Fingerprint"], [[k["name"], k["fingerprint"]] for k in keypairs])


class Client:
    """nova-api's RPC; its refusals (ApiError) become CommandError with the API's own message."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port

    def __call__(self, method: str, **kwargs: Any) -> Any:
        try:
            return rpc.call(self.host, self.port, method, timeout=API_TIMEOUT, **kwargs)
        except rpc.RemoteError as exc:
            if not exc.delivered:
                raise CommandError(f"cannot reach nova-api at {exc.endpoint}: {exc.message}") from None
            message = exc.message.removeprefix("ApiError: ")
            raise CommandError(message if message != exc.message else f"nova-api: {exc.message}") from None


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise CommandError(f"cannot read {what} {path}: {exc.strerror}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nova", description="Command-line interface to the compute API.")
    p.add_argument("--flagfile", default=flags.DEFAULT_FLAGFILE)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="<subcommand>")
    boot = sub.add_parser("boot", help="Boot a new server.")
    boot.add_argument("--image", required=True, help="Image to boot from (name or ID).")
    boot.add_argument("--flavor", required=True, help="Flavor ID or name (see nova flavor-list).")
    boot.add_argument("--key-name", "--key_name", dest="key_name", help="Key pair to inject (nova keypair-add).")
    boot.add_argument("--availability-zone", "--availability_zone", dest="zone",
                      help="nova, or nova:<compute host> to pick the compute.")
    boot.add_argument("--user-data", "--user_data", dest="user_data", help="File of user data for the guest.")
    boot.add_argument("name")
    sub.add_parser("list", help="List active servers.")
    for verb, text in (("show", "Show details about the given server."),
                       ("delete", "Immediately shut down and delete a server."),
                       ("console-log", "Get console log output of a server.")):
        sub.add_parser(verb, help=text).add_argument("server")
    sub.add_parser("image-list", help="Print a list of available images to boot from.")
    sub.add_parser("flavor-list", help="Print a list of available 'flavors' (sizes of servers).")
    keypair_add = sub.add_parser("keypair-add", help="Create a new key pair for use with instances.")
    keypair_add.add_argument("--pub-key", "--pub_key", dest="pub_key", help="Path to a public ssh key to import.")
    keypair_add.add_argument("name")
    sub.add_parser("keypair-list", help="Print a list of keypairs.")
    sub.add_parser("keypair-delete", help="Delete keypair by its name.").add_argument("name")
    secgroup.add_parsers(sub)
    return p


def run(args: argparse.Namespace, api: Client) -> str | None:
    """Run one command; returns what to print (None: nothing)."""
    if args.cmd == "boot":
        user_data = None
        if args.user_data:
            user_data = base64.b64encode(_read(args.user_data, "user data").encode()).decode()
        return show(api("create_server", name=args.name, image=args.image, flavor=args.flavor,
                        availability_zone=args.zone, key_name=args.key_name, user_data=user_data))
    if args.cmd == "list":
        return server_list(api("list_servers"))
    if args.cmd == "show":
        return show(api("get_server", ref=args.server))
    if args.cmd == "delete":
        api("delete_server", ref=args.server)
        return None
    if args.cmd == "console-log":
        output = api("get_console_output", ref=args.server)
        return output[:-1] if output.endswith("\n") else output
    if args.cmd == "image-list":
        return image_list(api("list_images"))
    if args.cmd == "flavor-list":
        return flavor_list(api("list_flavors"))
    if args.cmd == "keypair-add":
        public_key = _read(args.pub_key, "public key") if args.pub_key else None
        keypair = api("create_keypair", name=args.name, public_key=public_key)
        return keypair["private_key"].rstrip("\n") if keypair.get("private_key") else None
    if args.cmd == "keypair-list":
        return keypair_list(api("list_keypairs"))
    if args.cmd == "keypair-delete":
        api("delete_keypair", name=args.name)
        return None
    raise CommandError(f"unknown command {args.cmd}")


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        conf = flags.load(args.flagfile)
        if args.cmd.startswith("secgroup-"):
            return secgroup.run(args, conf, table)
        output = run(args, Client(conf.metadata_host, conf.osapi_compute_listen_port))
    except flags.FlagError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    except CommandError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    if output is not None:
        print(output)
    return 0
