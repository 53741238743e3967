"""The controller's image store: ``<image_store_path>/<hash>/`` holds ``image.json`` and the files.

Essex kept images in glance on the controller and each compute downloaded an image on first use
into ``<instances_path>/_base``. Here the store is a directory the host side fills (the testbed's
cirros-compatible guest, or the user's real cirros disk) and nova-api serves it over HTTP on
``<my_ip>:<glance_port>`` to the computes:

    GET /v1/images              JSON list of the images' descriptions
    GET /v1/images/<id>         one description (image.json plus its id)
    GET /v1/images/<id>/<file>  the bytes of one of its files (kernel, ramdisk or disk)

``image.json``: ``name``, ``kind`` (initramfs | disk), ``hash``, ``cmdline``, ``files`` (names) and
``checksums`` (sha256 per file, checked by the compute after download). An image's id is the uuid
in ``image.json`` or, when it has none, a uuid derived from its hash (stable across testbeds).
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nova import wsgi
from nova.api import ec2utils
from nova.db import Database, utcnow

LOG = logging.getLogger("nova.image.store")

IMAGE_FILES = ("kernel", "ramdisk", "disk")
_NAMESPACE = uuidlib.UUID("6f1c1e4e-2a8b-4c55-9a55-2f0b4f1f1a7e")


def image_uuid(image_hash: str) -> str:
    return str(uuidlib.uuid5(_NAMESPACE, image_hash))


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    hash: str
    kind: str
    files: tuple[str, ...]
    path: Path
    meta: dict[str, Any] = field(repr=False)

    def describe(self) -> dict[str, Any]:
        """What GET /v1/images/<id> returns: image.json with the id and the status."""
        return {**self.meta, "id": self.id, "status": "ACTIVE"}


class ImageStore:
    def __init__(self, path: str | Path, db: Database | None = None):
        self.path = Path(path)
        self.db = db

    def _load(self, meta_file: Path) -> Image | None:
        try:
            meta = json.loads(meta_file.read_text())
            if not isinstance(meta, dict):
                raise ValueError("image.json must hold a JSON object")
            files = tuple(meta.get("files", ()))
            if not set(files) <= set(IMAGE_FILES):
                raise ValueError(f"files must be among {IMAGE_FILES}")
            image_hash = str(meta.get("hash") or meta_file.parent.name)
            return Image(id=str(meta.get("id") or image_uuid(image_hash)), name=str(meta.get("name", "")),
                         hash=image_hash, kind=str(meta.get("kind", "")), files=files, path=meta_file.parent,
                         meta=meta)
        except (OSError, ValueError, TypeError) as exc:
            LOG.error("skipping image %s: %s", meta_file, exc)
            return None

    def list(self) -> list[Image]:
        """Every image of the store, by name then id."""
        images = [self._load(p) for p in sorted(self.path.glob("*/image.json"))]
        return sorted((i for i in images if i is not None), key=lambda i: (i.name, i.id))

    def get(self, image_id: str) -> Image | None:
        return next((i for i in self.list() if i.id == image_id), None)

    def find(self, ref: str) -> list[Image]:
        """Images matching ``ref`` by id (or hash) first, then by name, as novaclient resolved them."""
        images = self.list()
        by_id = [i for i in images if ref in (i.id, i.hash)]
        return by_id or [i for i in images if i.name == ref]

    def file(self, image_id: str, name: str) -> Path | None:
        """A file of an image, only among those its image.json lists (no other path is served)."""
        image = self.get(image_id)
        if image is None or name not in image.files:
            return None
        path = image.path / name
        return path if path.is_file() else None

    def ec2_id(self, image_id: str) -> str:
        """``ami-%08x``: the image's number in ``s3_images``, assigned on first use (Essex)."""
        if self.db is None:
            raise RuntimeError("the image store has no database for EC2 ids")
        with self.db.transaction() as conn:
            row = conn.execute("SELECT id FROM s3_images WHERE uuid = ?", (image_id,)).fetchone()
            number = row[0] if row else conn.execute(
                "INSERT INTO s3_images (uuid, created_at) VALUES (?, ?)", (image_id, utcnow())).lastrowid
        return ec2utils.image_ec2_id(int(number))


class ImageHandler(wsgi.Handler):
    server: ImageServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        store = self.server.store
        parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
        if parts[:2] != ["v1", "images"] or len(parts) > 4:
            self._json(404, {"error": f"no such resource {self.path}"})
        elif len(parts) == 2:
            self._json(200, [i.describe() for i in store.list()])
        elif len(parts) == 3:
            image = store.get(parts[2])
            if image is None:
                self._json(404, {"error": f"no image {parts[2]}"})
            else:
                self._json(200, image.describe())
        else:
            self._send_file(store.file(parts[2], parts[3]))

    do_HEAD = do_GET  # noqa: N815

    def _json(self, status: int, body: object) -> None:
        self.reply(status, json.dumps(body).encode(), "application/json")

    def _send_file(self, path: Path | None) -> None:
        if path is None:
            self._json(404, {"error": f"no such image file {self.path}"})
            return
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if self.command != "HEAD":
            with path.open("rb") as src:
                shutil.copyfileobj(src, self.wfile, 1 << 20)
        LOG.info("served %s (%d bytes) to %s", path, size, self.client_address[0])


class ImageServer(wsgi.Server):
    def __init__(self, host: str, port: int, store: ImageStore):
        self.store = store
        super().__init__("image store", host, port, ImageHandler)
