"""Errors meant for users: each carries one line that says what is wrong and where."""


class FlatbedError(Exception):
    """Base for errors shown to the user as a single line (no traceback)."""


class UsageError(FlatbedError):
    """The command line or an input file is wrong (bad topology, unknown testbed...): exit code 2."""


class NodeGoneError(FlatbedError):
    """A node that the state file names is not running any more."""
