"""flatbed's re-implementation of the pieces of OpenStack nova (Essex, 2012.1) the testbed runs.

Only Debian 12's python3 and its standard library are used: the package is copied as-is into
``/usr/lib/python3/dist-packages/nova`` on the nodes.
"""
