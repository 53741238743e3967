"""Root conftest: the testbed plugin lives in fixtures/ and is loaded for e2e/ and tests/ alike."""

pytest_plugins = ["fixtures.plugin", "fixtures.guests", "fixtures.reuse", "fixtures.cli", "fixtures.metadata",
                  "fixtures.timings"]
