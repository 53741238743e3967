"""flatbed: an end-to-end testbed for the nova-network FlatDHCP deployment."""

__version__ = "0.1.0"
