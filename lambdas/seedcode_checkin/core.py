"""Lifecycle of the two seeded GitLab repositories: create or adopt, reconcile, apply the deletion policy.

Functions take a `GitLabApi` (the adapter; a fake in unit tests) and loaders as parameters; only the
handler builds them. Every step is safe to repeat: CloudFormation, Lambda and python-gitlab may all retry.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from mlops_common import contract
from mlops_common.errors import (
    ConfigError,
    GitLabForbidden,
    GitLabNotFound,
    GitLabRejected,
    MlopsError,
    ProjectNotOwned,
)
from mlops_common.gitlab_api import GitLabApi, Namespace, ProjectInfo, Variable
from mlops_common.secrets import AccessKeys, StoredTrigger

from seedcode_checkin.config import ARCHIVE, DELETE, CheckinConfig, RepoTarget
from seedcode_checkin.seed import Seed

logger = logging.getLogger(__name__)

# Marks which custom-resource instance (physical id) currently manages a repository, so the Delete
# CloudFormation sends for an old physical id after a rename leaves a repository that is still in use.
RESOURCE_TOPIC_PREFIX = "sagemaker-seed-"
# On a repository a Create made until that Create succeeded: such a repository was never used.
INCOMPLETE_TOPIC = "gitlab-mlops-incomplete"
CLEANUP_RESERVE = 25.0  # seconds kept, at most, for removing what a failed Create made
PIPELINE_VARIABLES_ROLE = "developer"
MAINTAINER = 40  # GitLab access level: only Maintainers push to or merge into the default branch
REPORTER = 20  # the trigger's read token: reads pipelines, changes nothing
READ_TOKEN_LIFETIME_DAYS = 365  # GitLab's default maximum lifetime of an access token
_ID_SEPARATOR = "|"

MANAGED_VARIABLES = frozenset(
    {
        contract.VAR_PROJECT_NAME,
        contract.VAR_PROJECT_ID,
        contract.VAR_PROJECT_ARN,
        contract.VAR_REGION,
        contract.VAR_REGION_ALIAS,
        contract.VAR_ARTIFACT_BUCKET,
        contract.VAR_MODEL_PACKAGE_GROUP,
        contract.VAR_SAGEMAKER_EXECUTION_ROLE,
        contract.VAR_AUTH_MODE,
        contract.VAR_CI_ROLE,
        contract.VAR_CI_PROD_ROLE,
        contract.VAR_ACCESS_KEY_ID,
        contract.VAR_SECRET_ACCESS_KEY,
        contract.VAR_PROD_ACCESS_KEY_ID,
        contract.VAR_PROD_SECRET_ACCESS_KEY,
    }
)
BUILD, DEPLOY = "build", "deploy"

SeedLoader = Callable[[str], Seed]  # seed S3 key -> Seed
DutyKeys = Mapping[str, AccessKeys]  # duty (build, staging, prod) -> its access key


class TriggerStore(Protocol):
    """Where the deploy repository's pipeline trigger token lives (the project's secret)."""

    def read(self) -> StoredTrigger | None: ...

    def write(self, trigger: StoredTrigger) -> None: ...


@dataclass(frozen=True)
class Outcome:
    physical_id: str
    build: ProjectInfo
    deploy: ProjectInfo

    def data(self) -> dict[str, str]:
        """What GetAtt returns (all strings, small: CloudFormation caps the response at 4 KiB)."""
        return {
            "ModelBuildProjectId": str(self.build.id),
            "ModelBuildPath": self.build.path_with_namespace,
            "ModelBuildCloneUrl": self.build.http_url_to_repo,
            "ModelDeployProjectId": str(self.deploy.id),
            "ModelDeployPath": self.deploy.path_with_namespace,
            "ModelDeployCloneUrl": self.deploy.http_url_to_repo,
        }


class CreateFailed(MlopsError):
    """A Create that failed; `physical_id` is the id to answer with (the rollback Delete receives it)."""

    def __init__(self, message: str, physical_id: str) -> None:
        super().__init__(message)
        self.physical_id = physical_id


# --- identity --------------------------------------------------------------------------------------
def physical_id(host: str, build_path: str, deploy_path: str) -> str:
    """Stable id derived from where the repositories are: it changes only when they are replaced."""
    return _ID_SEPARATOR.join((host, build_path, deploy_path))


def parse_physical_id(value: str) -> tuple[str, str, str] | None:
    """(host, build path, deploy path), or None for ids we did not make (e.g. after a failed Create)."""
    parts = value.split(_ID_SEPARATOR)
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def resource_topic(resource_id: str) -> str:
    return RESOURCE_TOPIC_PREFIX + hashlib.sha256(resource_id.encode()).hexdigest()[:12]


def resolve_namespace(gl: GitLabApi, group: str) -> Namespace:
    return gl.group(group) if group else gl.token_owner_namespace()


def planned_paths(namespace: Namespace, target: RepoTarget) -> tuple[str, str]:
    return f"{namespace.full_path}/{target.build_repo}", f"{namespace.full_path}/{target.deploy_repo}"


# --- CI/CD variables --------------------------------------------------------------------------------
def ci_variables(cfg: CheckinConfig, repository: str, keys: DutyKeys | None) -> list[Variable]:
    """The variables one repository gets (names from the contract); secrets masked and protected.

    The build repository gets the build duty's credentials. The deploy repository gets the staging
    duty's under the standard names and the production duty's under the PROD names, which only its
    production job uses (and, for a role, only its default branch can assume).
    """
    plain = {
        contract.VAR_PROJECT_NAME: cfg.project_name,
        contract.VAR_PROJECT_ID: cfg.target.project_id,
        contract.VAR_PROJECT_ARN: cfg.project_arn,
        contract.VAR_REGION: cfg.region,
        contract.VAR_REGION_ALIAS: cfg.region,
        contract.VAR_ARTIFACT_BUCKET: cfg.artifact_bucket,
        contract.VAR_MODEL_PACKAGE_GROUP: cfg.model_package_group,
        contract.VAR_SAGEMAKER_EXECUTION_ROLE: cfg.execution_role_arn,
        contract.VAR_AUTH_MODE: cfg.ci_auth_mode,
    }
    duties = {BUILD: (("build", ""),), DEPLOY: (("staging", ""), ("prod", "PROD_"))}[repository]
    secret: list[Variable] = []
    for duty, key_prefix in duties:
        if cfg.ci_auth_mode == contract.AUTH_MODE_OIDC:
            name = contract.VAR_CI_PROD_ROLE if duty == "prod" else contract.VAR_CI_ROLE
            plain[name] = cfg.duty(duty).role_arn
            continue
        if keys is None or duty not in keys:
            raise ValueError(f"access-keys mode needs the {duty} keys")  # the handler always reads them
        key = keys[duty]
        secret += [
            Variable(f"AWS_{key_prefix}ACCESS_KEY_ID", key.access_key_id, masked=True, protected=True),
            Variable(
                f"AWS_{key_prefix}SECRET_ACCESS_KEY", key.secret_access_key, masked=True, protected=True
            ),
        ]
    return [Variable(key, value) for key, value in plain.items()] + secret


def reconcile_variables(gl: GitLabApi, project: ProjectInfo, desired: list[Variable]) -> None:
    """Create or update our variables; remove ones we manage that no longer apply (auth mode switch)."""
    current = gl.variables(project.id)
    for variable in desired:
        have = current.get(variable.key)
        if have is None:
            try:
                gl.create_variable(project.id, variable)
            except GitLabRejected:  # already taken: a retried POST created it meanwhile
                gl.update_variable(project.id, variable)
        elif have != variable:
            gl.update_variable(project.id, variable)
    wanted = {v.key for v in desired}
    for key in sorted(MANAGED_VARIABLES - wanted):
        if key in current:
            with contextlib.suppress(GitLabNotFound):
                gl.delete_variable(project.id, key)
    logger.info("CI/CD variables of %s: %s", project.path_with_namespace, ", ".join(sorted(wanted)))


# --- projects ---------------------------------------------------------------------------------------
def _description(role: str, cfg: CheckinConfig) -> str:
    return (
        f"Model {role} code of SageMaker project {cfg.project_name} ({cfg.target.project_id}). "
        "Created by its CloudFormation stack, which manages this project's CI/CD variables."
    )


def _refuse_if_foreign(project: ProjectInfo, project_id: str) -> None:
    if contract.owner_topic(project_id) not in project.topics:
        raise ProjectNotOwned(
            f"GitLab project '{project.path_with_namespace}' exists and was not created by this SageMaker "
            f"project ({project_id}); choose another repository name or delete it"
        )


def ensure_project(
    gl: GitLabApi,
    namespace: Namespace,
    name: str,
    role: str,
    cfg: CheckinConfig,
    resource_id: str,
    existing: ProjectInfo | None,
    created: list[ProjectInfo],
) -> ProjectInfo:
    """Create the project (appended to `created`), or adopt `existing`, which carries our owner topic.

    A new project carries INCOMPLETE_TOPIC until the whole Create succeeded, so a rollback Delete can
    tell it from a repository the team already used.
    """
    path = f"{namespace.full_path}/{name}"
    owner, marker = contract.owner_topic(cfg.target.project_id), resource_topic(resource_id)
    if existing is None:
        try:
            made = gl.create_project(
                namespace, name, _description(role, cfg), [owner, marker, INCOMPLETE_TOPIC]
            )
        except GitLabRejected:
            # Taken: by our own POST whose answer was lost (it carries our topics), or by someone else.
            existing = gl.find_project(path)
            if existing is None:
                raise
            _refuse_if_foreign(existing, cfg.target.project_id)
            if INCOMPLETE_TOPIC in existing.topics:
                created.append(existing)
                return existing
        else:
            logger.info("created GitLab project %s (id %s)", made.path_with_namespace, made.id)
            created.append(made)
            return made
    _refuse_if_foreign(existing, cfg.target.project_id)
    topics = [t for t in existing.topics if not t.startswith(RESOURCE_TOPIC_PREFIX)] + [marker]
    if existing.archived:
        gl.unarchive_project(existing.id)
    if set(topics) != set(existing.topics):
        gl.update_project(existing.id, {"topics": topics})
    logger.info("adopted GitLab project %s (id %s), created earlier by this project", path, existing.id)
    adopted = replace(existing, topics=tuple(topics), archived=False)
    if INCOMPLETE_TOPIC in topics:  # left by a failed Create that could not remove it: never used
        created.append(adopted)
    return adopted


def remove_created(gl: GitLabApi, created: Sequence[ProjectInfo]) -> list[str]:
    """Delete what a failed Create made (whatever the deletion policy); the paths it could not delete."""
    left: list[str] = []
    for project in created:
        try:
            gl.delete_project(project.id)
            logger.info("failed Create: removed %s, which it had created", project.path_with_namespace)
        except GitLabNotFound:
            pass
        except MlopsError as exc:
            logger.error("failed Create: could not remove %s: %s", project.path_with_namespace, exc)
            left.append(project.path_with_namespace)
    return left


def _complete(gl: GitLabApi, created: Sequence[ProjectInfo]) -> None:
    for project in created:
        gl.update_project(project.id, {"topics": [t for t in project.topics if t != INCOMPLETE_TOPIC]})


# --- seed code --------------------------------------------------------------------------------------
def push_seed(
    gl: GitLabApi, project: ProjectInfo, branch: str, seed: Seed, cfg: CheckinConfig, sync: bool
) -> str:
    """One commit with the whole seed on a new branch; with `sync`, one commit with what differs.

    Returns what happened: "pushed", "updated", "unchanged" or "kept" (existing branch, no sync).
    """
    message = (
        f"Seed {seed.name} code for SageMaker project {cfg.project_name} ({cfg.target.project_id})\n\n"
        f"Seed-Sha256: {seed.digest}"
    )
    try:
        if not gl.branch_exists(project.id, branch):
            gl.commit(project.id, branch, message, seed.create_actions())
            result = "pushed"
        elif not sync:
            result = "kept"
        else:
            actions = seed.sync_actions(gl.tree(project.id, branch))
            if actions:
                gl.commit(project.id, branch, message, actions)
            result = "updated" if actions else "unchanged"
    except GitLabRejected:
        # A retried POST may have landed already: accept it if the branch now holds the seed.
        if not gl.branch_exists(project.id, branch) or seed.sync_actions(gl.tree(project.id, branch)):
            raise
        result = "pushed"
    logger.info("seed %s on %s/%s: %s", seed.name, project.path_with_namespace, branch, result)
    return result


# --- lifecycle --------------------------------------------------------------------------------------
def protect_default_branch(gl: GitLabApi, project: ProjectInfo, branch: str) -> None:
    """Only Maintainers may push to or merge into the default branch: it is what deploys to production."""
    result = gl.protect_branch(project.id, branch, MAINTAINER)
    logger.info(
        "default branch %s of %s: %s (Maintainers push and merge)",
        branch,
        project.path_with_namespace,
        result,
    )


def ensure_deploy_trigger(
    gl: GitLabApi, deploy: ProjectInfo, target: RepoTarget, store: TriggerStore, today: dt.date | None = None
) -> str:
    """A pipeline trigger token on the deploy repository, and a read-only access token, in the project's
    secret.

    The approval trigger starts the deploy pipeline with the trigger token, so it never needs the platform
    token, and looks up the pipelines it started with the read token (read_api, Reporter), renewed here when
    it expires within `target.token_warning_days`. Triggers of this project that the secret does not name
    (a retried create, a replaced secret) are revoked. Returns "kept" or "created".
    """
    today = today or dt.date.today()
    stored = store.read()
    ours = [t for t in gl.triggers(deploy.id) if t.description == target.trigger_description]
    if (
        stored is not None
        and stored.project_id == deploy.id
        and stored.gitlab_url == gl.url
        and any(t.id == stored.trigger_id for t in ours)
    ):
        keep, result, trigger = stored.trigger_id, "kept", stored
    else:
        info, token = gl.create_trigger(deploy.id, target.trigger_description)
        trigger = StoredTrigger(token, info.id, deploy.id, gl.url)
        keep, result = info.id, "created"
    renew_by = (today + dt.timedelta(days=target.token_warning_days)).isoformat()
    if (
        stored is None
        or trigger is not stored
        or not trigger.read_token
        or trigger.read_token_expires <= renew_by
    ):
        expires = today + dt.timedelta(days=READ_TOKEN_LIFETIME_DAYS)
        token_id, read_token = gl.create_access_token(
            deploy.id, target.read_token_name, ["read_api"], REPORTER, expires
        )
        if trigger.read_token_id and trigger.project_id == deploy.id:
            with contextlib.suppress(GitLabNotFound):
                gl.revoke_access_token(deploy.id, trigger.read_token_id)
        trigger = replace(
            trigger, read_token=read_token, read_token_id=token_id, read_token_expires=expires.isoformat()
        )
    if trigger != stored:
        store.write(trigger)
    for stale in ours:
        if stale.id != keep:
            with contextlib.suppress(GitLabNotFound):
                gl.delete_trigger(deploy.id, stale.id)
    logger.info("pipeline trigger of %s: %s", deploy.path_with_namespace, result)
    return result


def token_expiry_warning(gl: GitLabApi, warning_days: int, today: dt.date | None = None) -> str:
    """ "" or a warning that the platform token expires within `warning_days`; fails once it expired."""
    today = today or dt.date.today()
    try:
        expires = gl.token_expiry()
    except (GitLabNotFound, GitLabForbidden) as exc:  # older GitLab, or not a personal token
        logger.warning("could not read the GitLab token's expiry: %s", exc)
        return ""
    if expires is None:
        return ""
    days = (expires - today).days
    if days < 0:
        raise ConfigError(
            f"the platform GitLab token expired on {expires.isoformat()}: ask the platform administrator "
            "to store a new one (init.sh)"
        )
    if days > warning_days:
        return ""
    message = (
        f"the platform GitLab token expires on {expires.isoformat()} (in {days} days): ask the platform "
        "administrator to rotate it (init.sh), or every project's check-in fails then"
    )
    logger.warning("%s", message)
    return message


def revoke_deploy_triggers(gl: GitLabApi, deploy: ProjectInfo, target: RepoTarget) -> int:
    """Revoke this project's pipeline triggers on the deploy repository; returns how many."""
    revoked = 0
    for trigger in gl.triggers(deploy.id):
        if trigger.description == target.trigger_description:
            with contextlib.suppress(GitLabNotFound):
                gl.delete_trigger(deploy.id, trigger.id)
            revoked += 1
    return revoked


def create(
    gl: GitLabApi,
    cfg: CheckinConfig,
    load_seed: SeedLoader,
    keys: DutyKeys | None,
    triggers: TriggerStore,
    *,
    sync_seed: bool = True,
) -> Outcome:
    """Create (or adopt) both projects, set variables and settings, push the seeds, protect the default
    branches and give the deploy repository a pipeline trigger for approvals.

    Order matters: the build repository's first commit starts its first pipeline, so variables come
    first, and the deploy repository is seeded before the build one (an approval may follow quickly).
    Nothing here starts a deploy pipeline: the deploy seed's CI rules skip push pipelines without a model.
    """
    target = cfg.target
    build_seed, deploy_seed = load_seed(cfg.build_seed_key), load_seed(cfg.deploy_seed_key)
    namespace = resolve_namespace(gl, target.gitlab_group)
    build_path, deploy_path = planned_paths(namespace, target)
    resource_id = physical_id(gl.host, build_path, deploy_path)
    # Both names are checked before either repository is created.
    found = {path: gl.find_project(path) for path in (build_path, deploy_path)}
    for project in found.values():
        if project is not None:
            _refuse_if_foreign(project, target.project_id)
    created: list[ProjectInfo] = []
    deadline = gl.deadline
    if deadline is not None:  # keep time to remove what this run created if the rest fails
        gl.set_deadline(deadline - min(CLEANUP_RESERVE, max(0.0, deadline - time.monotonic()) * 0.3))
    try:
        build = ensure_project(
            gl, namespace, target.build_repo, "build", cfg, resource_id, found[build_path], created
        )
        deploy = ensure_project(
            gl, namespace, target.deploy_repo, "deploy", cfg, resource_id, found[deploy_path], created
        )
        reconcile_variables(gl, build, ci_variables(cfg, BUILD, keys))
        reconcile_variables(gl, deploy, ci_variables(cfg, DEPLOY, keys))
        # GitLab.com defaults new projects to no_one_allowed: the approval trigger passes variables.
        gl.update_project(deploy.id, {"ci_pipeline_variables_minimum_override_role": PIPELINE_VARIABLES_ROLE})
        push_seed(gl, deploy, target.default_branch, deploy_seed, cfg, sync_seed)
        push_seed(gl, build, target.default_branch, build_seed, cfg, sync_seed)
        protect_default_branch(gl, deploy, target.default_branch)
        protect_default_branch(gl, build, target.default_branch)
        ensure_deploy_trigger(gl, deploy, target, triggers)
        _complete(gl, created)
    except MlopsError as exc:
        gl.set_deadline(deadline)
        left = remove_created(gl, created)
        undone = (
            f"; could not remove {', '.join(left)} (the rollback Delete removes them)"
            if left
            else (f"; removed {', '.join(p.path_with_namespace for p in created)}" if created else "")
        )
        raise CreateFailed(f"{exc}{undone}", resource_id) from None
    finally:
        gl.set_deadline(deadline)
    return Outcome(physical_id(gl.host, build.path_with_namespace, deploy.path_with_namespace), build, deploy)


def update(
    gl: GitLabApi, cfg: CheckinConfig, load_seed: SeedLoader, keys: DutyKeys | None, triggers: TriggerStore
) -> Outcome:
    """Reconcile settings, variables (rotated keys too), protection and the trigger. Existing branches
    keep the team's code (no seed re-push); new repositories (a rename) are created and seeded, and the
    new physical id makes CloudFormation delete the old resource afterwards, which applies the deletion
    policy to the old repositories."""
    return create(gl, cfg, load_seed, keys, triggers, sync_seed=False)


def delete(gl: GitLabApi, target: RepoTarget, resource_id: str) -> list[str]:
    """Apply the deletion policy to the repositories of `resource_id` that this project created.

    Gone already is success; repositories without our owner topic, or now managed by a newer resource
    (after a rename), are left alone. Returns one line per repository saying what happened.
    """
    parsed = parse_physical_id(resource_id)
    if parsed is None or parsed[0] != gl.host:
        # Not an id we returned (Create failed before answering): use the planned paths instead.
        try:
            namespace = resolve_namespace(gl, target.gitlab_group)
        except GitLabNotFound:
            return [f"group '{target.gitlab_group}' not found: nothing was created"]
        paths = planned_paths(namespace, target)
        resource_id = physical_id(gl.host, *paths)
    else:
        paths = (parsed[1], parsed[2])
    owner, marker = contract.owner_topic(target.project_id), resource_topic(resource_id)
    report: list[str] = []
    for path in paths:
        project = gl.find_project(path)
        if project is None:
            report.append(f"{path}: already gone")
        elif owner not in project.topics:
            report.append(f"{path}: not created by this project, left alone")
        elif marker not in project.topics:
            report.append(f"{path}: now used by a renamed resource of this project, left alone")
        elif INCOMPLETE_TOPIC in project.topics:
            # Made by a Create that failed: never used, so removed whatever the deletion policy says.
            report.append(f"{path}: {_apply_policy(gl, project, DELETE)} (left by a failed Create)")
        else:
            if path == paths[1]:
                revoked = revoke_deploy_triggers(gl, project, target)
                if revoked:
                    report.append(f"{path}: {revoked} approval pipeline trigger(s) revoked")
            report.append(f"{path}: {_apply_policy(gl, project, target.deletion_policy)}")
    for line in report:
        logger.info("delete (%s): %s", target.deletion_policy, line)
    return report


def _apply_policy(gl: GitLabApi, project: ProjectInfo, policy: str) -> str:
    try:
        if policy == DELETE:
            gl.delete_project(project.id)
            return "deleted"
        if policy == ARCHIVE:
            if not project.archived:
                gl.archive_project(project.id)
            return "archived"
    except GitLabNotFound:
        return "already gone"
    return "retained"
