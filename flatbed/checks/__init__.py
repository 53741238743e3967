"""The checks: what the suite compares a live testbed with, and how it reads and probes it.

A library, not a plugin: the expectations built from the topology (``expect``), the listing
comparator (``compare``), the readers of node listings (``listings``), the traffic witnesses
(``traffic``), guest consoles and shells (``console``, ``guestshell``), the services' verbs
(``services``) and every waiter's named timeout (``timeouts``). Tools and unit tests import it
without a testbed; the pytest plugin in ``fixtures/`` only hands its objects to tests.
"""
