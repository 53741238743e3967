"""Node and guest images, built offline from Debian packages and cached by a hash of their inputs.

- :func:`flatbed.images.base.ensure_base` -> the node root filesystem (debootstrap).
- :func:`flatbed.images.guest.ensure_guest` -> the cirros-compatible guest (kernel + initramfs),
  or a user-supplied cirros disk image.
- :func:`flatbed.images.cirros_disk.ensure_cirros_disk` -> that guest as a cirros-layout disk image
  (MBR, ext3 ``cirros-rootfs``, GRUB), what ``--cirros-image`` is tested with.
- :func:`cache_dir` / :func:`list_images` / :func:`prune_images` -> where the images live, what
  is there, and dropping superseded ones.

Submodules are imported lazily by callers so that ``import flatbed.images`` stays cheap.
"""

from __future__ import annotations

from flatbed.images.cache import CachedImage, cache_dir, list_images, prune_images

__all__ = ["CachedImage", "cache_dir", "list_images", "prune_images"]
