"""The entry points behind ``/usr/bin/nova-*``: each ``main(argv) -> exit status``."""
