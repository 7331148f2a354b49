"""Loaded by every Python the engine-tier tests start with this folder on PYTHONPATH: with
``DSTACK_TEST_CLOUDLESS`` set, dstack's stack programs get stand-in cloud resources
(``tests.engine.cloudless``) — in a `dstack` CLI process, exactly as in the test process."""

import os

if os.environ.get("DSTACK_TEST_CLOUDLESS"):
    from tests.engine import cloudless

    cloudless.install()
