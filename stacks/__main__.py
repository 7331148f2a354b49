"""The Pulumi program of ``Pulumi.yaml`` (``main: stacks/``), for ``pulumi preview``/``up`` run
by hand: reads the stack's config and declares the bootstrap or a run stack. dstack itself runs
the same programs inline (``dstack.compute.aws.driver``). See ``stacks/Pulumi.example.yaml``.

The one module of ``stacks`` that imports dstack above ``models``: an entry point, like
``dstack/__main__.py``, it composes the programs with dstack's user data and store scope
(``dstack.compute.aws.handrun``); nothing imports it.
"""

import pulumi

from dstack.compute.aws import handrun
from stacks import program

settings = pulumi.Config("dstack")
if handrun.stack_kind(settings) == "bootstrap":
    program.bootstrap_program(handrun.bootstrap_args(settings))
else:
    program.run_program(handrun.run_args(settings))
