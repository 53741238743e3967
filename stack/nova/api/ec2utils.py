"""Identifier formats of Essex (``nova/api/ec2/ec2utils.py``, ``nova/db/api.py``, ``nova/utils.py``).

>>> instance_name(9), id_to_ec2_id(9), instance_name(10), id_to_ec2_id(10), image_ec2_id(1)
('instance-00000009', 'i-00000009', 'instance-0000000a', 'i-0000000a', 'ami-00000001')
"""

from __future__ import annotations

import random
import string

INSTANCE_NAME_TEMPLATE = "instance-%08x"  # Essex flag instance_name_template


def instance_name(instance_id: int) -> str:
    """The libvirt domain and instance directory name of an instance."""
    return INSTANCE_NAME_TEMPLATE % instance_id


def id_to_ec2_id(instance_id: int, template: str = "i-%08x") -> str:
    """The EC2 id the metadata service and cirros show (cirros needs the ``i-`` prefix)."""
    return template % instance_id


def image_ec2_id(image_id: int, image_type: str = "ami") -> str:
    """``ami-%08x`` of an image's integer id (Essex numbered glance uuids in ``s3_images``)."""
    return f"{image_type}-{image_id:08x}"


def generate_uid(topic: str, size: int = 8, rng: random.Random | None = None) -> str:
    """Essex's utils.generate_uid: ``r-`` + 8 random characters (reservation ids)."""
    characters = "01234567890" + string.ascii_lowercase
    choice = (rng or random.SystemRandom()).choice
    return f"{topic}-" + "".join(choice(characters) for _ in range(size))
