"""Loaded by every Python the box-tier tests start with this folder on PYTHONPATH: with
``DSTACK_TEST_CLOUDLESS`` set, dstack's stack programs get the box's stand-in resources
(``tests.cloud.standins``) — in a `dstack` CLI process."""

import os

if os.environ.get("DSTACK_TEST_CLOUDLESS"):
    from tests.cloud import standins

    standins.install()
