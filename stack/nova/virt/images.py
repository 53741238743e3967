"""A compute's image cache: download an image from the controller's store into ``_base`` on first use.

Essex's ``nova/virt/images.py`` fetched from glance into ``<instances_path>/_base/`` the first
time an image was used on a host and reused the copy afterwards. Here the store is nova-api's
(``GET <url>`` gives ``image.json``, ``GET <url>/<file>`` each file); files are checked against
the sha256 in ``image.json`` and the directory appears atomically (rename), so a half-finished
download is never taken for a cached image.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

LOG = logging.getLogger("nova.virt.images")

FETCH_TIMEOUT = 120.0
CHUNK = 1 << 20


class ImageFetchError(Exception):
    """The image could not be downloaded or did not match its checksum."""


def _open(url: str) -> Any:
    try:
        return urllib.request.urlopen(url, timeout=FETCH_TIMEOUT)
    except urllib.error.HTTPError as exc:
        raise ImageFetchError(f"GET {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ImageFetchError(f"GET {url}: {getattr(exc, 'reason', exc)}") from None


def cached(dest: Path) -> bool:
    return (dest / "image.json").is_file()


def fetch_to_base(url: str, dest: Path) -> dict[str, Any]:
    """Download the image at ``url`` into ``dest`` unless it is there; returns its image.json."""
    if cached(dest):
        return dict(json.loads((dest / "image.json").read_text()))
    partial = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with _open(url) as response:
            meta = json.loads(response.read())
        checksums = meta.get("checksums", {})
        total = 0
        for name in meta.get("files", []):
            digest = hashlib.sha256()
            with _open(f"{url}/{name}") as response, (partial / name).open("wb") as out:
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    total += len(chunk)
            expected = checksums.get(name)
            if expected and digest.hexdigest() != expected:
                raise ImageFetchError(f"{url}/{name}: sha256 {digest.hexdigest()} does not match the store's "
                                      f"{expected}")
        (partial / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
        try:
            partial.rename(dest)
        except OSError:
            if not cached(dest):  # another download won the race: keep its copy
                raise
        LOG.info("Fetched image %s (%d bytes) from %s into %s", meta.get("name"), total, url, dest)
        return dict(meta)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
