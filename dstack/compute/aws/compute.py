"""``AwsCompute``: each run becomes an ephemeral Pulumi stack on AWS.

``check`` makes every job's offers (the catalog's fitting types, priced; the error names the
closest), checks them against the account's vCPU quotas (``quotas``) and makes sure the
Pulumi engine is here. ``start`` (once per run: the stack holds every job) stores this
dstack's wheel in the bucket, renders the stack offline, previews it and records the plan
before anything is created, then runs ``up`` and records the outputs; when AWS has no
instance for an offer, the try is destroyed and the next offer tried (``tries``); a failure
is classified (``failures``). The instance's user data installs dstack
and starts the runner against the S3 store; the CLI follows the run from the store.

Who destroys the stack: the instance powers itself off when its job ends (or the store is
lost, or the time limit passes) and terminates — that alone stops the cost. The stack's other
resources (security group, role) are destroyed by ``release`` once the run is finished: an
attached `dstack run`, `dstack stop`, or `dstack prune` calls it. ``kill`` terminates the
instance at once. Jobs with ``resources.local`` run on this machine through ``LocalCompute``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from dstack import state
from dstack.compute.aws import plan as offline_plan
from dstack.compute.aws import preflight, previous, tries
from dstack.compute.aws.boot_watch import BootWatch
from dstack.compute.aws.catalog import Catalog, InstanceType, Request
from dstack.compute.aws.choice import JobChoice, check_budget
from dstack.compute.aws.config import PROJECT, AwsComputeConfig, state_backend_url
from dstack.compute.aws.driver import (
    ProvisioningInterrupted,
    StackDriver,
    Workspace,
    require_engine,
)
from dstack.compute.aws.ec2 import Ec2
from dstack.compute.aws.failures import ProvisioningError
from dstack.compute.aws.infra_records import run_recorder
from dstack.compute.aws.offers import Offer
from dstack.compute.aws.runargs import program_of
from dstack.compute.aws.walk import Walk
from dstack.compute.aws.wheel import Wheel, ensure_wheel
from dstack.compute.base import Compute, RunPlan, StartFailure
from dstack.errors import ComputeError
from dstack.models import JobSpec, JobState, RunRecord, StackRecord
from dstack.state import pins
from dstack.storage.base import Storage
from dstack.store_config import S3StoreConfig
from dstack.units import parse_size_mib

DriverFactory = Callable[[Workspace], StackDriver]
#: what an AWS region code looks like (anything else, e.g. a plan's placeholder, is not
#: filtered on)
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


class AwsCompute(Compute):
    name = "aws"
    is_cloud = True
    start_timeout = 20 * 60.0

    def __init__(
        self,
        config: AwsComputeConfig | None = None,
        *,
        driver_factory: DriverFactory | None = None,
        ec2: Ec2 | None = None,
        catalog: Catalog | None = None,
        local: Compute | None = None,
        wheel: Wheel | None = None,
        caller_ip: str | None = None,
        iam: Any = None,
    ) -> None:
        self.config = config or AwsComputeConfig()
        self._driver_factory = driver_factory
        self._ec2 = ec2
        self._catalog = catalog
        self._local = local
        self._wheel = wheel
        self._caller_ip = caller_ip
        self._iam: Any = iam
        self._choices: dict[str, JobChoice] = {}
        self._boot_watch = BootWatch()

    # the Compute contract

    def check(self, jobs: list[JobSpec]) -> None:
        cloud = [job for job in jobs if not job.resources.local]
        local = [job for job in jobs if job.resources.local]
        if local:
            self.local.check(local)
        for job in cloud:
            preflight.refuse_unserved_apps(job)
        choices = [self.choice_for(job) for job in cloud]
        check_budget(self.config, choices, spent_this_month=None)  # per run; the month: quote
        if not cloud:
            return
        self.require_credentials()  # what the user must fix first, before the engine
        if self._driver_factory is None:
            require_engine()  # nothing is sent to AWS while what is missing is local
        if any(job.ports for job in cloud):
            # found before anything is written, and kept for the run's stack
            self._caller_ip = preflight.require_caller(self.caller_cidr()).split("/")[0]
        from dstack.compute.aws.quotas import refuse_unfit

        refuse_unfit(self, choices)  # before anything is written or created

    def quote(
        self, storage: Storage, jobs: list[JobSpec], owner: str
    ) -> dict[int, tuple[float, float]]:
        from dstack.compute.aws import budget

        choices = [self.choice_for(job) for job in jobs if not job.resources.local]
        budget.enforce(self.config, storage, choices, owner, time.time())
        return {c.job.job_index: (c.offer.price_per_hour, c.max_duration_seconds) for c in choices}

    def start(self, storage: Storage, run: RunRecord, jobs: list[JobSpec]) -> None:
        """Jobs with ``resources.local`` start here; the others are the run's stack: created
        at submit, updated at a retry (the refresh notices the terminated instance and the
        update replaces it). The stack declares every cloud job of the run, so a retry of
        some of them reads the specs of the others."""
        local = [job for job in jobs if job.resources.local]
        if local:
            self.local.start(storage, run, local)
        if len(local) == len(jobs):
            return
        requested = [job.job_index for job in jobs if not job.resources.local]
        try:
            # what the instances run is what the submitter wrote: a spec is used only if its
            # bytes are the pinned ones (nothing is provisioned for a rewritten one), and each
            # runner gets its pin in the user data
            jobs, spec_pins = pins.pinned_run_specs(
                storage, run.repo_id, run.run_name, run.job_count, jobs
            )
            cloud = [job for job in jobs if not job.resources.local]
            # each try is one create; AWS having no instance for an offer moves on (``tries``)
            walk = tries.plan_walk(self, storage, run, cloud)
            tries.walk_offers(
                walk, storage, cloud,
                attempt=lambda: self._provision(storage, run, cloud, spec_pins, walk, requested),
                cleaned=lambda: state.read_stack_record(storage, run.run_name) is None,
            )  # fmt: skip
        except ProvisioningInterrupted:
            raise
        except ComputeError as exc:
            exc.job_indices = exc.job_indices or requested
            raise ProvisioningError.of(exc) from exc.__cause__

    def _provision(
        self,
        storage: Storage,
        run: RunRecord,
        cloud: list[JobSpec],
        spec_pins: dict[int, str],
        walk: Walk,
        requested: list[int],
    ) -> None:
        """One try: the stack made of each job's current offer, recording each step."""
        # a stack that exists already (a later attempt) is refreshed before it is updated,
        # once the instances of the attempts before are gone (``previous``)
        existing = state.read_stack_record(storage, run.run_name) is not None
        store = _s3_config(storage)
        if existing:
            previous.end_before_retry(self.ec2(), storage, cloud, requested, say=self._say)
        try:
            wheel = ensure_wheel(storage, self._wheel)
            args = self.stack_args(
                store, run, cloud, wheel.key, wheel_sha256=wheel.sha256, spec_pins=spec_pins,
                choice_for=lambda job: walk.choice(job.job_index), subnet_for=walk.subnet_for,
            )  # fmt: skip
            preflight.check_run(self, args)
            driver = self.driver(store)
            self._say(f"Provisioning run {run.run_name} on AWS (stack {run.run_name})")
            rendering = offline_plan.render(program_of(args), project=PROJECT, stack=run.run_name)
        except KeyboardInterrupt:
            raise ProvisioningInterrupted("interrupted before anything was created") from None
        state.write_stack_record(
            storage,
            StackRecord(
                stack=run.run_name,
                repo_id=run.repo_id,
                run_name=run.run_name,
                created_at=time.time(),
                backend_url=driver.workspace.backend_url,
                region=driver.workspace.region,
            ),
        )
        outcome: dict[str, bool] = {}
        offers = {str(job.job_index): walk.current(job.job_index).as_dict() for job in cloud}
        record = run_recorder(storage, run, driver, rendering, self._say, outcome, offers)
        try:
            # a later attempt (a retried spot interruption) updates the same stack: the
            # refresh notices the terminated instance, and up replaces it
            driver.provision(run.run_name, program_of(args), record, refresh=existing)
        except ComputeError:
            # whatever the destroy did, instances the engine launched but lost track of (an
            # interrupted create) are found by their tags
            self.sweep(store, run.run_name)
            if outcome.get("destroy"):  # cleaned up: no stack is left for prune to find
                state.delete_stack_record(storage, run.run_name)
            raise
        self._say(f"Stack {run.run_name} is up; the runner starts when the instance boots")

    def is_alive(self, state: JobState) -> bool | None:
        """From EC2 when the job's state names its instance (short timeouts, cached a few
        seconds: ``ps`` asks this); otherwise as on this machine, or unknown."""
        if state.instance_id:
            return self.ec2().is_alive(state.instance_id)
        return self.local.is_alive(state)

    def start_failure(
        self, storage: Storage, spec: JobSpec, state: JobState
    ) -> StartFailure | None:
        """A boot that failed, read from the boot log the instance uploaded (``boot_watch``)."""
        return None if spec.resources.local else self._boot_watch.failure(storage, spec, state)

    def kill(self, state: JobState) -> None:
        if not state.instance_id:
            self.local.kill(state)
            return
        try:
            self.ec2().terminate([state.instance_id])
        except ComputeError as exc:
            self._say(f"could not terminate {state.instance_id} ({exc}); it stops itself")

    def release(self, storage: Storage, run: RunRecord) -> bool:
        """Destroy the run's stack once every job is finished (``release``)."""
        from dstack.compute.aws.release import release_run

        return release_run(self, storage, run)

    def plan(
        self,
        storage: Storage,
        run: RunRecord,
        jobs: list[JobSpec],
        *,
        wheel_key: str | None = None,
    ) -> RunPlan:
        from dstack.compute.aws.runplan import plan_run

        return plan_run(self, storage, run, jobs, wheel_key=wheel_key)

    def prune(self, storage: Storage, *, dry_run: bool = False) -> Any:
        from dstack.compute.aws.prune import prune

        return prune(storage, self, dry_run=dry_run)

    def configure(self, storage: Storage, *, kms_key_id: str | None = None) -> Any:
        """Create or adopt the bucket and the bootstrap stack (``bootstrap.BootstrapResult``)."""
        from dstack.compute.aws.bootstrap import create_or_adopt_bootstrap

        self.require_credentials()

        return create_or_adopt_bootstrap(
            _s3_config(storage),
            region=self.config.require_region(),
            kms_key_id=kms_key_id,
            reporter=self.reporter,
            fences={"role_path": self.config.role_path,
                    "permissions_boundary": self.config.permissions_boundary},
        )  # fmt: skip

    # building blocks, also used by `dstack run --plan` and `dstack prune`

    def require_credentials(self) -> None:
        """Before the engine: credentials (not asked of a compute given a test double driver)."""
        if self._driver_factory is None:
            preflight.require_credentials(self.config.profile)

    @property
    def local(self) -> Compute:
        if self._local is None:
            from dstack.compute.local import LocalCompute

            self._local = LocalCompute()
        return self._local

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog.load()
        return self._catalog

    def instance_for(self, job: JobSpec) -> InstanceType:
        """The type of the job's first offer; ComputeError naming the closest if none fits."""
        return self.choice_for(job).offer.instance

    def choice_for(self, job: JobSpec) -> JobChoice:
        """The job's offers, priced live (cached an hour) or from the catalog (``choice``)."""
        from dstack.compute.aws.choice import choose

        key = f"{job.job_id}/{job.workflow}"
        if key not in self._choices:
            self._choices[key] = choose(self.config, self.catalog, job, self.request_for(job))
        return self._choices[key]

    def request_for(self, job: JobSpec) -> Request:
        """What the job asks of an instance, the config's defaults filling the gaps."""
        region = self.config.resolved_region()
        return Request.from_resources(
            job.resources,
            region=region if region and _REGION.match(region) else None,
            default_cpu=self.config.default_cpu,
            default_memory_mib=parse_size_mib(self.config.default_memory),
        )

    def stack_args(
        self,
        store: S3StoreConfig,
        run: RunRecord,
        jobs: list[JobSpec],
        wheel_key: str,
        *,
        caller_cidr: str | None = None,
        wheel_sha256: str | None = None,
        spec_pins: dict[int, str] | None = None,
        choice_for: Callable[[JobSpec], JobChoice] | None = None,
        subnet_for: Callable[[Offer], str | None] | None = None,
    ) -> Any:
        """The run stack's arguments (``stacks.run.RunStackArgs``) for these jobs, each on
        the first offer of ``choice_for`` (default: its first offer); the caller's address
        is looked up only if ports are asked for and none is given."""
        from dstack.compute.aws.runargs import run_stack_args

        return run_stack_args(
            self.config, store, run, jobs, wheel_key,
            choice_for=choice_for or self.choice_for,
            caller_cidr=lambda: caller_cidr or self.caller_cidr(),
            wheel_sha256=wheel_sha256,
            spec_pins=spec_pins,
            subnet_for=subnet_for,
        )  # fmt: skip

    def caller_cidr(self, *, lookup: bool = True) -> str | None:
        """The submitter's public address as a /32 (/128): from the config, DSTACK_CALLER_IP,
        or — only when ``lookup`` and on a real submit — asked of AWS's checkip service."""
        raw = self._caller_ip or self.config.caller_ip or os.environ.get("DSTACK_CALLER_IP")
        return preflight.caller_cidr(raw, lookup=lookup)

    def driver(self, store: S3StoreConfig) -> StackDriver:
        workspace = Workspace(
            project=PROJECT,
            backend_url=state_backend_url(store, self.config.resolved_region()),
            region=self.config.require_region(),
            secrets_provider=self.config.secrets_provider,
            profile=self.config.profile,
        )
        if self._driver_factory is not None:
            driver = self._driver_factory(workspace)
        else:
            from dstack.compute.aws.engine import aws_plugins

            driver = StackDriver(replace(workspace, plugins=aws_plugins()))
        if driver.on_output is None and self.reporter is not None:
            driver.on_output = self.reporter
        return driver

    def ec2(self) -> Ec2:
        if self._ec2 is None:
            self._ec2 = Ec2(self.config.require_region(), profile=self.config.profile)
        return self._ec2

    def iam(self) -> Any:
        """An IAM client (preflight's spot role; the roles `dstack prune` deletes)."""
        self._iam = self._iam or preflight.iam_client(self.config.profile, self.ec2().endpoint_url)
        return self._iam

    def sweep(self, store: S3StoreConfig, run_name: str) -> list[str]:
        """Terminate instances still tagged with the run (after a destroy that failed, or one
        that raced an instance being created). Best effort."""
        try:
            live = self.ec2().tagged_instances(store.bucket, store.prefix, run_name)
            return self.ec2().terminate(i.instance_id for i in live)
        except ComputeError as exc:
            self._say(f"could not look for instances of run {run_name} left behind ({exc})")
            return []

    def record_spend(self, storage: Storage, run: RunRecord) -> None:
        """Record what the run spent, from its instances' times in EC2 (``spend``)."""
        from dstack.compute.aws.spend import record_spend

        record_spend(storage, run, self.ec2(), self._say)

    # helpers

    def _say(self, line: str) -> None:
        if self.reporter is not None:
            self.reporter(line)


def _s3_config(storage: Storage) -> S3StoreConfig:
    config = storage.config()
    if not isinstance(config, S3StoreConfig):
        raise ComputeError(
            f"AWS compute needs the S3 state store (instances read and write it), but this "
            f"store is {storage.describe()}: run `dstack config --backend aws`"
        )
    return config
