"""A third provider, for unit tests only: proof that one package is all a provider needs.

Its "machines" are directories ``<run>-<node>`` under ``$FLATBED_TOY_ROOT`` (each holding the
node's role), tagged with the run id like every provider's resources. Its nodes run nothing.
Registered by the test that uses it (``providers.register("toy", "toyprovider:ToyProvider")``);
nothing in flatbed names it.
"""

from toyprovider.provider import ToyProvider

__all__ = ["ToyProvider"]
