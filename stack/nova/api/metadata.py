"""The EC2 metadata service of nova-api (Essex ``nova/api/metadata/handler.py``), on port 8775.

A guest asks ``http://169.254.169.254/...``; the controller DNATs that to
``<metadata_host>:8775`` and the request arrives with the guest's fixed IP as its source. The
instance is the one that fixed IP belongs to; an unknown source gets 404.

URL map (Essex ``api-paste.ini``): ``/latest`` and each version of ``VERSIONS`` lead to the same
tree (Essex ignored the version); any other path, ``/`` included, answers the versions list.

Listing format (Essex ``print_data``): a dict prints its keys one per line, a sub-dict as
``key/`` or as ``key=<_name>`` when it has a ``_name`` (``public-keys/`` reads ``0=mykey``), a
list as its lines, the last newline cut. Essex iterated Python 2 dicts (hash order); keys are
sorted here, as later releases did, so a listing is stable.

>>> tree = build_tree(instance_id=9, hostname="cirros", dhcp_domain="novalocal", instance_type="m1.tiny",
...                   address="10.0.0.2", availability_zone="nova", image_ec2_id="ami-00000001",
...                   reservation_id="r-abcd1234", key_name=None, key_data=None, user_data="")
>>> print_data(lookup("/meta-data/instance-id", tree)), lookup("/meta-data/public-keys", tree)
('i-00000009', None)
"""

from __future__ import annotations

import base64
import binascii
import logging
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from nova import wsgi
from nova.api import ec2utils

LOG = logging.getLogger("nova.api.metadata")

VERSIONS = ("1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15", "2008-02-01",
            "2008-09-01", "2009-04-04")

# Essex _DEFAULT_MAPPINGS: an instance without root_device_name (every image here).
DEFAULT_MAPPINGS = {"ami": "sda1", "ephemeral0": "sda2", "root": "/dev/sda1", "swap": "sda3"}

# webob's HTTPNotFound, as Essex sent it.
NOT_FOUND_BODY = b"404 Not Found\n\nThe resource could not be found.\n\n   "


def versions_text() -> str:
    """The Versions app at ``/``: one version per line (Essex does not list ``latest``)."""
    return "".join(f"{v}\n" for v in VERSIONS)


def decode_user_data(user_data: str | None) -> str:
    """Essex stored user data base64-encoded (``''`` when none) and served it decoded."""
    try:
        return base64.b64decode(user_data or "", validate=True).decode("utf-8", errors="replace")
    except binascii.Error:
        return ""


def build_tree(*, instance_id: int, hostname: str, dhcp_domain: str, instance_type: str, address: str,
               availability_zone: str, image_ec2_id: str, reservation_id: str, key_name: str | None,
               key_data: str | None, user_data: str | None, security_groups: Sequence[str] = ("default",),
               floating_ip: str = "", launch_index: int = 0) -> dict[str, Any]:
    """The tree Essex's get_metadata built for one instance, seen from ``address``.

    No ``mpi/`` key: its "extension" was removed before 2012.1 (nova commit 8ecdc44690).
    """
    fqdn = f"{hostname}.{dhcp_domain}"
    meta: dict[str, Any] = {
        "ami-id": image_ec2_id,
        "ami-launch-index": launch_index,
        "ami-manifest-path": "FIXME",
        "block-device-mapping": dict(DEFAULT_MAPPINGS),
        "hostname": fqdn,
        "instance-action": "none",
        "instance-id": ec2utils.id_to_ec2_id(instance_id),
        "instance-type": instance_type,
        "local-hostname": fqdn,
        "local-ipv4": address,
        "placement": {"availability-zone": availability_zone},
        "public-hostname": fqdn,
        "public-ipv4": floating_ip or "",
        "reservation-id": reservation_id,
        "security-groups": list(security_groups),
    }
    # public-keys only when the instance was booted with a key pair (else 404, as cirros shows).
    if key_name:
        meta["public-keys"] = {"0": {"_name": key_name, "openssh-key": key_data or ""}}
    return {"user-data": decode_user_data(user_data), "meta-data": meta}


def lookup(path: str, data: Any) -> Any:
    """Walk ``path`` down the tree; None when a key is missing (Essex: a leaf ends the walk)."""
    for item in path.split("/"):
        if not item:
            continue
        if not isinstance(data, dict):
            return data
        if item not in data:
            return None
        data = data[item]
    return data


def print_data(data: Any) -> str:
    if isinstance(data, dict):
        lines = []
        for key in sorted(k for k in data if k != "_name"):
            value = data[key]
            if isinstance(value, dict):
                lines.append(f"{key}={value['_name']}" if "_name" in value else f"{key}/")
            else:
                lines.append(key)
        return "\n".join(lines)
    if isinstance(data, list):
        return "\n".join(str(x) for x in data)
    return str(data)


# A function from the requester's address to its instance's tree, or None for an unknown one.
MetadataSource = Callable[[str], "dict[str, Any] | None"]


class MetadataHandler(wsgi.Handler):
    server: MetadataServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urllib.parse.unquote(self.path.split("?", 1)[0])
        version, _, rest = path.lstrip("/").partition("/")
        if version not in VERSIONS and version != "latest":
            self._answer(200, versions_text(), path)
            return
        address = self.client_address[0]
        if self.server.use_forwarded_for:
            address = self.headers.get("X-Forwarded-For", address)
        try:
            data = self.server.source(address)
        except Exception:  # Essex: log it and answer 500, the service keeps serving
            LOG.exception("Failed to get metadata for ip: %s", address)
            self._answer(500, "An unknown error has occurred. Please try your request again.", path)
            return
        if data is None:
            LOG.error("Failed to get metadata for ip: %s", address)
            self._answer(404, None, path)
            return
        value = lookup(rest, data)
        if value is None:
            self._answer(404, None, path)
        else:
            self._answer(200, print_data(value), path)

    def _answer(self, status: int, text: str | None, path: str) -> None:
        body = NOT_FOUND_BODY if text is None else text.encode()
        self.reply(status, body, "text/html; charset=UTF-8")
        LOG.info("%s \"GET %s\" status: %d len: %d", self.client_address[0], path, status, len(body))


class MetadataServer(wsgi.Server):
    def __init__(self, host: str, port: int, source: MetadataSource, use_forwarded_for: bool = False):
        self.source = source
        self.use_forwarded_for = use_forwarded_for
        super().__init__("metadata", host, port, MetadataHandler)
