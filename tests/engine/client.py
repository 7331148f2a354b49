"""Another client of a stack, in a process of its own (a teammate's dstack): updates the stack
named on the command line with a program of one stand-in resource whose input changes on every
update (``DSTACK_STANDIN_SLOW`` makes it take a while), through dstack's driver. Prints the
engine's output to stderr and, last, ``ok`` or ``error: <the message dstack shows>``.

    python -m tests.engine.client BACKEND_URL STACK
"""

from __future__ import annotations

import sys
import uuid

from dstack.compute.aws.driver import StackDriver, Workspace
from dstack.errors import ComputeError
from tests.engine import cloudless


def main() -> int:
    backend_url, stack = sys.argv[1:3]
    cloudless.install()

    def program() -> None:
        import pulumi_aws as aws

        aws.iam.Role("shared-role", assume_role_policy=uuid.uuid4().hex)

    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    driver = StackDriver(
        Workspace(project="dstack", backend_url=backend_url, region="us-east-1"),
        on_output=echo,
    )
    try:
        driver.provision(stack, program, lambda kind, fields: None, ephemeral=False)
    except ComputeError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
