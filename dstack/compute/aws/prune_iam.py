"""The IAM part of `dstack prune`: runner roles (and their instance profiles) that a run's stack
left behind once the stack itself is gone.

A run's role carries the store's tags like every resource of its stack. IAM cannot search by
tag, so the roles under the configured path (``role_path``, ``/`` by default) are listed, and
only those named like a run's runner role (``<run>-runner-…``, or the administrator's
``role_name_prefix``) have their tags read. A role is deleted when it is tagged with this store
(bucket *and* prefix), its run is finished or gone, and no stack of that run remains: first its
inline policies, then its instance profiles (ours only), then the role.
"""

from __future__ import annotations

import re
from typing import Any

from dstack.compute.aws.prune_report import PruneAction
from dstack.errors import DstackError
from dstack.storage.s3 import aws_errors
from dstack.store_config import S3StoreConfig
from stacks import tags as tagging

#: the provider's name for a run's runner role: the resource name, a dash, seven characters
_RUNNER_ROLE = re.compile(r"-runner-[0-9a-z]{7}$")


def prune_roles(
    compute: Any, store: S3StoreConfig, verdicts: Any, remaining: set[str], report: Any
) -> None:
    try:
        iam = compute.iam()
        roles = _candidate_roles(iam, compute.config.role_path, compute.config.role_name_prefix)
    except Exception as exc:
        report.errors.append(f"IAM roles not checked: {aws_errors.brief(exc)}")
        return
    for role in roles:
        try:
            tags = _tags(iam.list_role_tags(RoleName=role)["Tags"])
        except Exception as exc:
            report.errors.append(f"role {role} not checked: {aws_errors.brief(exc)}")
            continue
        if not _ours(tags, store):
            continue
        repo_id, run_name = tags.get(tagging.REPO), tags.get(tagging.RUN)
        if not repo_id or not run_name or run_name in remaining:
            continue  # not a run's, or its stack still manages it
        why = verdicts.of(repo_id, run_name)
        if why is None:
            continue
        action = PruneAction("role", role, f"{repo_id}/{run_name}", why)
        report.actions.append(action)
        if report.dry_run:
            continue
        try:
            _delete_role(iam, role, store)
            action.done = True
        except (DstackError, Exception) as exc:
            action.error = aws_errors.brief(exc)


def _candidate_roles(iam: Any, path: str | None, name_prefix: str | None) -> list[str]:
    found = []
    for page in iam.get_paginator("list_roles").paginate(PathPrefix=path or "/"):
        for role in page.get("Roles", []):
            name = role["RoleName"]
            if _RUNNER_ROLE.search(name) or (name_prefix and name.startswith(name_prefix)):
                found.append(name)
    return found


def _ours(tags: dict[str, str], store: S3StoreConfig) -> bool:
    return tags.get(tagging.BUCKET) == tagging.clean(store.bucket) and tags.get(
        tagging.PREFIX
    ) == tagging.store_label(store.prefix)


def _delete_role(iam: Any, role: str, store: S3StoreConfig) -> None:
    for name in iam.list_role_policies(RoleName=role).get("PolicyNames", []):
        iam.delete_role_policy(RoleName=role, PolicyName=name)
    profiles = iam.list_instance_profiles_for_role(RoleName=role).get("InstanceProfiles", [])
    for profile in profiles:
        name = profile["InstanceProfileName"]
        iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=role)
        if _ours(_tags(profile.get("Tags")), store) or _profile_ours(iam, name, store):
            iam.delete_instance_profile(InstanceProfileName=name)
    iam.delete_role(RoleName=role)


def _profile_ours(iam: Any, name: str, store: S3StoreConfig) -> bool:
    try:
        tags = iam.list_instance_profile_tags(InstanceProfileName=name).get("Tags")
    except Exception:
        return False
    return _ours(_tags(tags), store)


def _tags(items: Any) -> dict[str, str]:
    return {item["Key"]: item["Value"] for item in items or []}
