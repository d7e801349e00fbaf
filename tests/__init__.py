"""The test suite."""

import os

# Moves every port the tests bind, so that two test runs can share a machine.
PORT_SHIFT = int(os.environ.get("VIBESDK_TEST_PORT_SHIFT", "0"))
