"""The Pulumi program of ``Pulumi.yaml`` (``main: stacks/``), for ``pulumi preview``/``up`` run
by hand: reads the stack's config and declares the bootstrap or a run stack. dstack itself runs
the same programs inline (``dstack.compute.aws.driver``). See ``stacks/Pulumi.example.yaml``."""

import pulumi

from stacks import config, program

settings = pulumi.Config("dstack")
if config.stack_kind(settings) == "bootstrap":
    program.bootstrap_program(config.bootstrap_args(settings))
else:
    program.run_program(config.run_args(settings))
