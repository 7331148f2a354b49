"""A run and its jobs as the run stack's arguments (``stacks.run.RunStackArgs``).

Per job: the instance type, market and zone of its first offer (``choice``), how long it may live,
and the boot script that installs this dstack and starts the job's runner. Per run: the ports
(the same fixed numbers on every instance, ``PORT_BASE`` up), the caller's address they open
to, the store keys the run's role may touch, and the provisioning settings of the config file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dstack import __version__, state
from dstack.compute.aws import userdata
from dstack.compute.aws.choice import JobChoice
from dstack.compute.aws.config import PORT_BASE, AwsComputeConfig
from dstack.compute.aws.offers import Offer
from dstack.compute.aws.scope import run_scope
from dstack.compute.aws.wheel import boto3_requirement, pinned_requirements, python_version
from dstack.models import JobSpec, RunRecord
from dstack.store_config import S3StoreConfig
from stacks.outputs import BUCKET_KMS_KEY_ARN

#: what a plan shows for a job's spec pin (the SHA-256 of its spec, known once it is written)
PLANNED_PIN = "SHA256-OF-THE-SPEC-AT-SUBMIT"

#: how long provisioning and boot may take before the instance's own clock starts: an instance
#: older than its hard limit plus this is terminated by `dstack prune`, whatever its run says
BOOT_ALLOWANCE_SECONDS = 30 * 60


def run_stack_args(
    config: AwsComputeConfig,
    store: S3StoreConfig,
    run: RunRecord,
    jobs: list[JobSpec],
    wheel_key: str,
    *,
    choice_for: Callable[[JobSpec], JobChoice],
    caller_cidr: Callable[[], str | None],
    wheel_sha256: str | None = None,
    constraints: list[str] | None = None,
    spec_pins: dict[int, str] | None = None,
    subnet_for: Callable[[Offer], str | None] | None = None,
) -> Any:
    """``caller_cidr`` is called only when the run asks for ports; ``constraints`` default to
    the versions this CLI runs with (``pinned_requirements``); ``spec_pins`` are the SHA-256
    of each job's stored spec (``state.pins``), :data:`PLANNED_PIN` in a plan; ``subnet_for`` is
    the subnet of an offer's zone in the configured VPC (``walk.Walk.subnet_for``)."""
    from stacks.run import InstanceArgs, RunStackArgs

    region = config.require_region()
    port_count = max((job.ports for job in jobs), default=0)
    ports = [PORT_BASE + i for i in range(port_count)]
    full = _full_key(store)
    pins = pinned_requirements() if constraints is None else constraints
    instances = []
    lifetime = 0
    for job in jobs:
        choice = choice_for(job)
        itype = choice.offer.instance
        lifetime = max(lifetime, choice.max_duration_seconds)
        boot = userdata.Boot(
            storage=store,
            repo_id=run.repo_id,
            run_name=run.run_name,
            job_index=job.job_index,
            region=region,
            wheel_key=full(wheel_key),
            boot_log_key=full(state.boot_log_key(run.repo_id, run.run_name, job.job_index)),
            version=__version__,
            max_duration_seconds=choice.max_duration_seconds,
            store_timeout_seconds=config.store_timeout_seconds,
            python=job.python,
            runner_python=python_version(),
            docker=job.image is not None,
            ports=ports[: job.ports],
            boto3_requirement=boto3_requirement(),
            wheel_sha256=wheel_sha256,
            constraints=pins,
            spec_sha256=(spec_pins or {}).get(job.job_index, PLANNED_PIN),
        )
        instances.append(
            InstanceArgs(
                job_index=job.job_index,
                instance_type=itype.name,
                interruptible=choice.offer.market == "spot",
                user_data=userdata.render_user_data(boot),
                gpu=itype.gpu_count > 0,
                root_volume_gb=config.root_volume_gb,
                availability_zone=choice.offer.availability_zone,
                subnet_id=subnet_for(choice.offer) if subnet_for else None,
            )
        )
    return RunStackArgs(
        bucket_name=store.bucket,
        repo_id=run.repo_id,
        run_name=run.run_name,
        user=run.owner.display,
        instances=instances,
        store_prefix=store.prefix,
        scope=run_scope(run, jobs, store_prefix=store.prefix, wheel_key=wheel_key),
        ports=ports,
        caller_cidr=caller_cidr() if ports else None,
        ami_id=config.ami_id,
        ami_parameter=config.ami_parameter,
        gpu_ami_parameter=config.gpu_ami_parameter,
        instance_profile_name=config.instance_profile,
        subnet_id=config.subnet_id,
        vpc_id=config.vpc_id,
        volume_kms_key_id=config.volume_kms_key_id,
        bucket_kms_key_arn=config.bootstrap.get(BUCKET_KMS_KEY_ARN) or None,
        role_path=config.role_path,
        role_name_prefix=config.role_name_prefix,
        permissions_boundary=config.permissions_boundary,
        lifetime_seconds=userdata.hard_limit_seconds(lifetime or config.max_duration_seconds)
        + BOOT_ALLOWANCE_SECONDS,
        partition=config.partition,
        extra_tags=dict(config.tags),
    )


def _full_key(store: S3StoreConfig) -> Callable[[str], str]:
    """A store key as an object key of the bucket (with the store's prefix)."""
    prefix = store.prefix.strip("/")
    return lambda key: f"{prefix}/{key}" if prefix else key


def program_of(args: Any) -> Callable[[], Any]:
    """The inline Pulumi program of a run stack with these arguments."""

    def program() -> Any:
        from stacks.program import run_program

        return run_program(args)

    return program
