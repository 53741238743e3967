"""Project-level pytest settings live in pyproject.toml ([tool.pytest.ini_options]); the testbed
plugin registers itself through its ``pytest11`` entry point (fixtures/, installed as
``flatbed_fixtures``), so nothing is registered here. This file marks the project root for pytest
(its ``rootdir``) and is where settings for the whole checkout would go."""
