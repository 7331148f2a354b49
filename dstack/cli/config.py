"""`dstack config`: choose where the state lives — this machine, or an S3 bucket a team shares.

By flags (`--backend aws --bucket NAME …`), or by questions when a flag is missing and a person
is at the terminal; `-y` (or no terminal) takes the defaults and asks nothing. The checks and
the file belong to ``dstack.services.config``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from dstack.services.config import AwsConfig


def register(app: typer.Typer) -> None:
    app.command(
        "config",
        help="Choose the state store: this machine (local) or an S3 bucket (aws) shared by a "
        "team. Asks for what the flags leave out when run in a terminal.",
    )(config)


def config(
    backend: str = typer.Option(None, "--backend", help="local or aws.", metavar="local|aws"),
    bucket: str = typer.Option(None, "--bucket", help="S3 bucket for runs, logs, artifacts."),
    region: str = typer.Option(None, "--region", help="AWS region of the bucket."),
    profile: str = typer.Option(None, "--profile", help="AWS profile (credentials)."),
    subnet: str = typer.Option(None, "--subnet", help="EC2 subnet for cloud runs."),
    endpoint_url: str = typer.Option(
        None, "--endpoint-url", help="An S3-compatible server (MinIO, Ceph…) instead of AWS."
    ),
    prefix: str = typer.Option(
        None,
        "--prefix",
        help="Keep dstack's objects under this folder of the bucket ('' for none).",
    ),
    yes: bool = typer.Option(False, "-y", "--yes", help="Take the defaults; ask nothing."),
    create: bool = typer.Option(
        False, "--create", help="Create or adopt the bucket and the IAM bootstrap stack (Pulumi)."
    ),
) -> None:
    from dstack.errors import ConfigError
    from dstack.services import config as service

    ask = not yes and sys.stdin.isatty()
    given = (bucket, region, profile, subnet, endpoint_url, prefix)
    given_aws = any(v is not None for v in given)
    chosen = backend or ("aws" if given_aws else None)
    if chosen is None:
        current = service.saved_backend()
        chosen = (
            _choose("State store (local or aws)", current, ("local", "aws")) if ask else current
        )
    if chosen not in ("local", "aws"):
        raise ConfigError(f"--backend: expected local or aws, got {chosen!r}")
    if chosen == "local":
        path = service.save_local()
        _done(path, service.describe("local", service.AwsConfig()))
        return
    saved = service.saved_aws()
    aws = saved.merged(
        bucket=bucket,
        region=region,
        profile=profile,
        subnet=subnet,
        endpoint_url=endpoint_url,
        prefix=None if prefix is None else prefix.strip("/"),
    )
    if create:
        path = service.create_bootstrap(aws, lambda line: print(line, file=sys.stderr))
        _done(path, service.describe("aws", service.saved_aws()))
        return
    new_bucket = bucket is not None and bucket != saved.bucket
    if new_bucket and region is None:
        aws = aws.merged(region="")  # the saved region was the old bucket's: ask the new one
    if ask:
        # the answers are of no use without credentials: say so before asking for them
        if profile is None and not service.has_profiles():
            service.require_credentials(aws.profile or service.default_profile())
        if profile is None:
            aws = _ask_profile(aws)
        service.require_credentials(aws.profile or None)
        if region is None and not new_bucket:
            aws = _ask_region(aws, keep_bucket=bucket is not None)
        # the subnet matters for cloud runs only: asked when the config already sends runs
        # to AWS, not of someone who only wants a shared state store
        wants_cloud = service.compute_configured()
        aws = _checked_interactively(aws, subnet_given=subnet is not None or not wants_cloud)
    else:
        if not aws.bucket:
            aws = aws.merged(bucket=service.default_bucket(aws) or "")
        aws = service.check_bucket(aws)
    path = service.save_aws(aws)
    _done(path, service.describe("aws", aws))


def _ask_profile(aws: AwsConfig) -> AwsConfig:
    from dstack.services import config as service

    default = aws.profile or service.default_profile() or "default"
    profile = typer.prompt("AWS profile", default=default, err=True).strip()
    return aws.merged(profile="" if profile == "default" else profile)


def _ask_region(aws: AwsConfig, *, keep_bucket: bool) -> AwsConfig:
    from dstack.services import config as service

    previous = aws.region
    default = previous or service.default_region(aws.profile)
    region = typer.prompt("AWS region", default=default, err=True).strip()
    if previous and region != previous and not keep_bucket:
        return aws.merged(region=region, bucket="")  # the saved bucket is in the old region
    return aws.merged(region=region)


def _checked_interactively(aws: AwsConfig, *, subnet_given: bool) -> AwsConfig:
    """Ask for the bucket until one passes the checks, then for the subnet."""
    from dstack.errors import ConfigError
    from dstack.services import config as service

    while True:
        if not aws.bucket:
            default = service.default_bucket(aws)
            name = typer.prompt("S3 bucket name", default=default, err=True).strip()
            aws = aws.merged(bucket=name)
        try:
            aws = service.check_bucket(aws)
            break
        except ConfigError as exc:
            print(f"✗ {exc}", file=sys.stderr)
            if not typer.confirm("Choose another bucket?", default=True, err=True):
                raise typer.Exit(1) from None
            aws = aws.merged(bucket="")
    if not subnet_given:
        subnet = typer.prompt(
            "EC2 subnet ID for cloud runs", default=aws.subnet or "no preference", err=True
        ).strip()
        aws = aws.merged(subnet="" if subnet == "no preference" else subnet)
    return aws


def _choose(question: str, default: str, choices: tuple[str, ...]) -> str:
    while True:
        answer = str(typer.prompt(question, default=default, err=True)).strip().lower()
        if answer in choices:
            return answer
        print(f"✗ choose one of: {', '.join(choices)}", file=sys.stderr)


def _done(path: Path, description: str) -> None:
    from dstack.services import config as service

    print(f"Saved {path}: {description}; {service.runs_where()}")
    overrides = service.env_overrides()
    if overrides:
        verb = "overrides" if len(overrides) == 1 else "override"
        print(
            f"Note: {', '.join(overrides)} set in this environment {verb} the saved settings",
            file=sys.stderr,
        )
