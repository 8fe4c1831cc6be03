"""The demo's steps against a running sandbox (see services.py): each is a short client of its URLs.

`Lab` drives the product the way its users and AWS would: init.sh bootstraps, CloudFormation creates
the project stack (the custom resource runs the packaged check-in Lambda), GitLab CI (gitlab-ci-local)
trains and registers a model, an approval emits SageMaker's event to the packaged trigger Lambda, the
deploy repository's CI deploys and tests staging, a person plays the production job, and a client calls
the endpoint through sagemaker-runtime.

Like a team's admin would, the demo gives the model-build repository a project access token for its
merge request notes (Reporter, `api` scope) in the masked CI/CD variable MR_NOTE_TOKEN; GitLab's job
token cannot write notes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gitlab
from mlops_common import contract

from scripts import REPO_ROOT
from scripts.iam.audit import Audit, StackSnapshot, installation, judge, load_snapshots, save_snapshots
from scripts.iam.requests import Lookups

from . import iam_recorder
from .custom_resources import CustomResourceBridge, Deletion, ResponseEndpoint
from .events import Emission, EventBridge, emit_model_package_change, set_approval
from .exceptions import SandboxError
from .inference import describe_model
from .lambda_runner import LambdaRunner
from .services import GROUP, IAM_CALLS_FILE, State
from .stack_gaps import fill_gaps
from .tls import LocalCA

REVIEW_TOKEN_NAME = "model-review"  # noqa: S105 - the token's display name
REVIEW_TOKEN_ROLE = 20  # Reporter: may comment, may not push or merge
SEED_DATA_BUCKET = "sagemaker-servicecatalog-seedcode-{region}"
SEED_DATA_KEY = "dataset/abalone-dataset.csv"
UCI_ABALONE = "https://archive.ics.uci.edu/ml/machine-learning-databases/abalone/abalone.data"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "abalone.csv"
PUBLISHED_TEMPLATE_KEY = contract.PUBLISHED_TEMPLATE_KEY
BOOTSTRAP_STACK = "gitlab-mlops-bootstrap"
IAM_MODEL_FILE = "iam-model.json"
BUILD_REPO, DEPLOY_REPO = "model-build", "model-deploy"
SETTLED = ("success", "failed", "canceled", "skipped", "manual")

Say = Callable[[str], None]


HOSTING_MODES = ("realtime", "serverless", "async", "batch")
BATCH_INPUT_PREFIX = "batch-input/"
ASYNC_DEMO_PREFIX = "async-inference/demo/"


def hosting_configs(mode: str, artifact_bucket: str) -> dict[str, dict[str, Any]]:
    """model-deploy's staging-config.json and prod-config.json for a hosting mode (the seed's files are
    realtime): what a team edits in its deploy repository."""
    instances = {
        "EndpointInstanceType": "ml.m5.large",
        "EndpointInstanceCount": 1,
        "EnableDataCapture": False,
    }
    if mode == "serverless":
        staging: dict[str, Any] = {"Hosting": {"Mode": mode, "MemorySizeInMB": 2048, "MaxConcurrency": 5}}
        prod: dict[str, Any] = {"Hosting": {"Mode": mode, "MemorySizeInMB": 2048, "MaxConcurrency": 20}}
        staging["Parameters"] = prod["Parameters"] = {}
    elif mode == "async":
        staging = {"Hosting": {"Mode": mode}, "Parameters": {**instances, "EnableAutoScaling": False}}
        prod = {
            "Hosting": {"Mode": mode, "ScaleToZero": True},
            "Parameters": {
                **instances,
                "EnableAutoScaling": True,
                "AutoScalingMinCapacity": 1,
                "AutoScalingMaxCapacity": 2,
                "TargetInvocationsPerInstance": 5,
            },
        }
    elif mode == "batch":
        staging = {"Hosting": {"Mode": mode}, "Parameters": {}}
        prod = {
            "Hosting": {"Mode": mode, "InputS3Uri": f"s3://{artifact_bucket}/{BATCH_INPUT_PREFIX}"},
            "Parameters": {},
        }
    else:
        raise SandboxError(f"hosting mode {mode!r}: the seed's own files are realtime")
    staging["Tags"], prod["Tags"] = {"stage": "staging"}, {"stage": "prod"}
    return {"staging": staging, "prod": prod}


class DemoError(SandboxError):
    """A demo step failed; the message says which thing and where to look."""


@dataclass
class Project:
    """The SageMaker project the demo created (saved as `<root>/project.json`)."""

    name: str
    id: str
    stack_name: str
    stack_id: str
    deletion_policy: str
    bundle_bucket: str
    package_group: str = ""
    artifact_bucket: str = ""
    build_project_id: int = 0
    deploy_project_id: int = 0
    build_path: str = ""
    deploy_path: str = ""
    extra_refs: dict[str, str] = field(default_factory=dict)
    hosting: str = "realtime"  # model-deploy's Hosting.Mode, set by set_hosting

    def save(self, root: Path) -> None:
        """The current project, and a record per project that outlives a later project's save (the IAM
        check reads a deleted project stack's tags from it: moto forgets deleted stacks)."""
        text = json.dumps(asdict(self), indent=2)
        (root / "project.json").write_text(text)
        (root / f"project-{self.id}.json").write_text(text)

    @classmethod
    def load(cls, root: Path) -> Project:
        path = root / "project.json"
        if not path.exists():
            raise DemoError("no project in this sandbox yet: run `demo create-project` first")
        return cls(**json.loads(path.read_text()))

    def endpoint_stack(self, stage: str) -> str:
        return contract.deploy_stack_name(self.name, self.id, stage)


def abalone_csv(say: Say) -> bytes:
    """The Abalone data: $ABALONE_DATA, ../shared/data/abalone.csv, or a download from UCI."""
    given = os.environ.get("ABALONE_DATA")
    path = Path(given) if given else DEFAULT_DATA
    if path.is_file():
        say(f"Abalone data from {path}")
        return path.read_bytes()
    if given:
        raise DemoError(f"ABALONE_DATA={given} does not exist: point it at the UCI abalone.data CSV")
    say(f"downloading the Abalone data from {UCI_ABALONE} ...")
    try:
        with urllib.request.urlopen(UCI_ABALONE, timeout=30) as answer:  # noqa: S310 - fixed https URL
            return bytes(answer.read())
    except OSError as exc:
        raise DemoError(
            f"cannot download the Abalone data ({exc}); this machine may be offline: download {UCI_ABALONE} "
            "elsewhere and set ABALONE_DATA=/path/to/abalone.data"
        ) from None


def shifted_archive(archive: bytes, shift: float) -> bytes:
    """model.tar.gz whose xgboost-model predicts `shift` more (base_score + shift); the rest unchanged."""
    import xgboost  # the sandbox's inference server needs it anyway

    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as source,
        tarfile.open(fileobj=out, mode="w:gz") as target,
    ):
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if data is not None and Path(member.name).name == "xgboost-model":
                booster = xgboost.Booster()
                booster.load_model(bytearray(data))
                config = json.loads(booster.save_config())
                base = float(str(config["learner"]["learner_model_param"]["base_score"]).strip("[]"))
                booster.set_param({"base_score": str(base + shift)})
                data = bytes(booster.save_raw("ubj"))
                member.size = len(data)
            target.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


class Lab:
    """Client-side steps of the demo against the sandbox described by `state`."""

    def __init__(self, state: State, say: Say = print) -> None:
        self.state = state
        self.root = Path(state.root)
        self.say = say
        self.cfn = state.client("cloudformation")
        self.sm = state.client("sagemaker")
        self.s3 = state.client("s3")

    # --- helpers -------------------------------------------------------------------------------------

    def gitlab(self) -> gitlab.Gitlab:
        return gitlab.Gitlab(
            self.state.gitlab_url, private_token=self.state.token, ssl_verify=self.state.ca_file, timeout=30
        )

    def lambda_runner(self) -> LambdaRunner:
        bundle = self.bundle_bucket()
        return LambdaRunner(
            lambda_client=self.state.client("lambda"),
            s3_client=self.s3,
            work_dir=self.root / "lambda",
            aws_env=self.state.aws_env(),
            extra_env={"SSL_CERT_FILE": self.state.ca_file},
            code_buckets=(bundle,),
            sts_client=self.state.client("sts"),
        )

    def bundle_bucket(self) -> str:
        return contract.bundle_bucket_name(self.state.account, self.state.region)

    def _bridge(self, endpoint: ResponseEndpoint, extra_refs: Mapping[str, str]) -> CustomResourceBridge:
        return CustomResourceBridge(
            cfn=self.cfn,
            runner=self.lambda_runner(),
            endpoint=endpoint,
            clients=self.state.client,
            region=self.state.region,
            account=self.state.account,
            state_file=self.root / "custom-resources.json",
            extra_refs=dict(extra_refs),
        )

    def _endpoint(self) -> ResponseEndpoint:
        ca = LocalCA.create(Path(self.state.ca_file).parent)
        return ResponseEndpoint(ca.issue("cfn-response"), self.state.moto_url).start()

    def event_bridge(self) -> EventBridge:
        return EventBridge(self.state.client("events"), self.state.client("lambda"), self.lambda_runner())

    # --- 1. bootstrap --------------------------------------------------------------------------------

    def seed_public_data(self) -> str:
        """The public seedcode dataset location the seed's pipeline reads by default, in moto S3."""
        bucket = SEED_DATA_BUCKET.format(region=self.state.region)
        self.s3.create_bucket(Bucket=bucket)
        self.s3.put_object(Bucket=bucket, Key=SEED_DATA_KEY, Body=abalone_csv(self.say))
        return f"s3://{bucket}/{SEED_DATA_KEY}"

    def create_oidc_provider(self) -> str:
        """The account's GitLab OIDC provider (moto's CloudFormation skips AWS::IAM::OIDCProvider)."""
        iam = self.state.client("iam")
        arn = iam.create_open_id_connect_provider(
            Url=self.state.gitlab_url,
            ClientIDList=["sts.amazonaws.com"],
            ThumbprintList=["0" * 40],
        )["OpenIDConnectProviderArn"]
        return str(arn)

    def bootstrap(self, oidc_arn: str) -> str:
        """./init.sh in s3-template mode against moto; returns its output (the token never appears)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "GITLAB_TOKEN"}
        env.update(self.state.aws_env())
        command = [
            "bash",
            str(REPO_ROOT / "init.sh"),
            "--region",
            self.state.region,
            "--mode",
            "s3-template",
            "--gitlab-url",
            self.state.gitlab_url,
            "--gitlab-ca-bundle",
            self.state.ca_file,
            "--oidc-provider-arn",
            oidc_arn,
            "--token-stdin",
        ]
        done = subprocess.run(
            command,
            input=self.state.token,
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        log = self.root / "logs" / "init.log"
        log.write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:]
            raise DemoError(f"init.sh failed: {last[0] if last else done.returncode} (log: {log})")
        return done.stdout

    # --- 2. project ----------------------------------------------------------------------------------

    def create_project(
        self, name: str, project_id: str, deletion_policy: str, auth_mode: str = "oidc"
    ) -> Project:
        bundle = self.bundle_bucket()
        # What Studio does with the S3-based template: the published object, the project's choices
        # only (everything that names a platform resource is pinned in the template), the template role.
        parameters = {
            "SageMakerProjectName": name,
            "SageMakerProjectId": project_id,
            "GitLabGroup": GROUP,
            "RepositoryDeletionPolicy": deletion_policy,
            "CiAuthMode": auth_mode,
        }
        stack_name = f"SP-{name}-{project_id}"
        stack_id = self.cfn.create_stack(
            StackName=stack_name,
            TemplateURL=f"https://{bundle}.s3.{self.state.region}.amazonaws.com/{PUBLISHED_TEMPLATE_KEY}",
            RoleARN=f"arn:aws:iam::{self.state.account}:role/gitlab-mlops-platform/gitlab-mlops-s3-template-launch",
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            Tags=[
                {"Key": "sagemaker:project-name", "Value": name},
                {"Key": "sagemaker:project-id", "Value": project_id},
            ],
        )["StackId"]
        project = Project(name, project_id, stack_name, stack_id, deletion_policy, bundle)
        gaps = fill_gaps(self.cfn, self.state.client, self.state.region, self.state.account, stack_name)
        project.extra_refs = dict(gaps.created)
        project.save(self.root)
        endpoint = self._endpoint()
        try:
            outcomes = self._bridge(endpoint, gaps.created).create(stack_name)
        finally:
            endpoint.stop()
        if not outcomes:
            raise DemoError(
                f"stack {stack_name} has no custom resource to run: is templates/project.yml right?"
            )
        for outcome in outcomes:
            outcome.raise_for_failure()
            self.say(outcome.message)
            if outcome.updated_functions:
                self.say(f"  dependants updated with its Data: {', '.join(outcome.updated_functions)}")
        stack = self.cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        if stack["StackStatus"] != "CREATE_COMPLETE":
            raise DemoError(
                f"stack {stack_name} is {stack['StackStatus']} after the custom resource answered"
            )
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        project.package_group = outputs["ModelPackageGroupName"]
        project.artifact_bucket = outputs["ArtifactsBucketName"]
        project.build_project_id = int(outputs["ModelBuildProjectId"])
        project.deploy_project_id = int(outputs["ModelDeployProjectId"])
        project.build_path = outputs["ModelBuildRepositoryPath"]
        project.deploy_path = outputs["ModelDeployRepositoryPath"]
        project.save(self.root)
        self.snapshot_stacks(project, outputs)
        self.set_review_token(project)
        return project

    # --- IAM, as AWS would evaluate it ----------------------------------------------------------------

    def _snapshot(
        self, stack_name: str, physical_ids: Mapping[str, str], custom_data: Mapping[str, Mapping[str, str]]
    ) -> StackSnapshot:
        stack = self.cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        template = self.cfn.get_template(StackName=stack_name)["TemplateBody"]
        body = template if isinstance(template, str) else json.dumps(template)
        parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}
        return StackSnapshot(stack_name, body, parameters, dict(physical_ids), dict(custom_data))

    def snapshot_stacks(self, project: Project, outputs: Mapping[str, str]) -> None:
        """Keep the bootstrap and project stacks' templates and values: the IAM check judges calls with them
        even after the project is deleted."""
        data = {
            "ModelBuildPath": outputs["ModelBuildRepositoryPath"],
            "ModelDeployPath": outputs["ModelDeployRepositoryPath"],
            "ModelBuildProjectId": outputs["ModelBuildProjectId"],
            "ModelDeployProjectId": outputs["ModelDeployProjectId"],
            "ModelBuildCloneUrl": outputs["ModelBuildRepositoryUrl"],
            "ModelDeployCloneUrl": outputs["ModelDeployRepositoryUrl"],
        }
        save_snapshots(
            self.root / IAM_MODEL_FILE,
            [
                self._snapshot(BOOTSTRAP_STACK, {}, {}),
                self._snapshot(project.stack_name, project.extra_refs, {"SeedRepositories": data}),
            ],
        )

    def iam_audit(self) -> Audit:
        """Every recorded call of a product principal, judged as AWS would (scripts/iam)."""
        world = installation(
            load_snapshots(self.root / IAM_MODEL_FILE), self.state.account, self.state.region
        )
        secrets_client = self.state.client("secretsmanager")

        def secret_arn(name: str) -> str:
            if name.startswith("arn:"):
                return name
            try:
                return str(secrets_client.describe_secret(SecretId=name)["ARN"])
            except secrets_client.exceptions.ResourceNotFoundException:
                return name

        def stack_of_change_set(arn: str) -> str:
            try:
                return str(self.cfn.describe_change_set(ChangeSetName=arn)["StackId"])
            except self.cfn.exceptions.ClientError:
                return ""

        def stack_arn(name: str) -> str:
            try:
                return str(self.cfn.describe_stacks(StackName=name)["Stacks"][0]["StackId"])
            except self.cfn.exceptions.ClientError:
                pass
            # Deleted already (project delete removes the deploy stacks): the newest stack of that name.
            for page in self.cfn.get_paginator("list_stacks").paginate():
                for summary in page["StackSummaries"]:
                    if summary["StackName"] == name:
                        return str(summary["StackId"])
            return name

        def stack_tags(arn: str) -> dict[str, str]:
            try:
                tags = self.cfn.describe_stacks(StackName=arn)["Stacks"][0].get("Tags", [])
            except self.cfn.exceptions.ClientError:
                # moto forgets a deleted project stack: its tags are the ones create_project gave it.
                for path in self.root.glob("project*.json"):
                    record = json.loads(path.read_text())
                    if record.get("stack_id") == arn:
                        return {
                            "sagemaker:project-name": record["name"],
                            "sagemaker:project-id": record["id"],
                        }
                return {}
            return {str(t["Key"]): str(t["Value"]) for t in tags}

        lookups = Lookups(
            secret_arn=secret_arn,
            stack_of_change_set=stack_of_change_set,
            stack_arn=stack_arn,
            stack_tags=stack_tags,
        )
        return judge(iam_recorder.read(self.root / IAM_CALLS_FILE), world, lookups)

    def set_review_token(self, project: Project) -> None:
        """A project access token for the model-build repository's merge request notes, in MR_NOTE_TOKEN."""
        repo = self.gitlab().projects.get(project.build_project_id)
        expires = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
        token = repo.access_tokens.create(
            {
                "name": REVIEW_TOKEN_NAME,
                "scopes": ["api"],
                "access_level": REVIEW_TOKEN_ROLE,
                "expires_at": expires,
            }
        )
        repo.variables.create(
            {
                "key": contract.VAR_MR_NOTE_TOKEN,
                "value": token.token,
                "masked": True,
                "protected": False,
                "description": "project access token (Reporter, api) posting the model note",
            }
        )
        self.say(
            f"{BUILD_REPO}: project access token {REVIEW_TOKEN_NAME!r} (Reporter, api, expires "
            f"{expires}) in masked variable {contract.VAR_MR_NOTE_TOKEN}"
        )

    def git_environment(self) -> dict[str, str]:
        """What git needs to trust the sandbox's HTTPS: the system's CAs plus the sandbox CA."""
        return {"GIT_SSL_CAINFO": self.state.git_ca_bundle}

    def clone_command(self, clone_url: str) -> str:
        """A `git clone` that works as it is, in any shell: it trusts the sandbox's CA for the clone and
        writes the CA and the token's credential store into the clone's config for later pushes."""
        bundle = self.state.git_ca_bundle
        helper = f"credential.helper=store --file={self.state.git_credentials_file}"
        return f"GIT_SSL_CAINFO={shlex.quote(bundle)} " + shlex.join(
            ["git", "clone", "-c", f"http.sslCAInfo={bundle}", "-c", helper, clone_url]
        )

    def repositories(self, project: Project) -> dict[str, dict[str, Any]]:
        """Each seeded repository: URLs, files on the default branch, CI variables (masked shown masked)."""
        gl = self.gitlab()
        shown: dict[str, dict[str, Any]] = {}
        for label, project_id in (
            (BUILD_REPO, project.build_project_id),
            (DEPLOY_REPO, project.deploy_project_id),
        ):
            repo = gl.projects.get(project_id)
            files = sorted(
                item["path"]
                for item in repo.repository_tree(ref=repo.default_branch, recursive=True, get_all=True)
                if item["type"] == "blob"
            )
            variables = {}
            for var in repo.variables.list(get_all=True):
                value = "[MASKED]" if var.masked else var.value
                variables[var.key] = {"value": value, "masked": var.masked, "protected": var.protected}
            shown[label] = {
                "path": repo.path_with_namespace,
                "id": repo.id,
                "clone_url": repo.http_url_to_repo,
                "web_url": repo.web_url,
                "default_branch": repo.default_branch,
                "files": files,
                "variables": variables,
                "archived": repo.archived,
            }
        return shown

    # --- 3. pipelines --------------------------------------------------------------------------------

    def pipelines(self, project_id: int) -> list[dict[str, Any]]:
        repo = self.gitlab().projects.get(project_id, lazy=True)
        return [p.attributes for p in repo.pipelines.list(get_all=True)]

    def pipeline_variables(self, project_id: int, pipeline_id: int) -> dict[str, str]:
        repo = self.gitlab().projects.get(project_id, lazy=True)
        pipeline = repo.pipelines.get(pipeline_id)
        return {v.key: v.value for v in pipeline.variables.list(get_all=True)}

    def wait_for_pipeline(
        self,
        project_id: int,
        label: str,
        *,
        newer_than: int = 0,
        source: str | None = None,
        timeout: float = 600,
        appear_timeout: float = 30,
    ) -> dict[str, Any]:
        """Wait for the first pipeline with id > newer_than (and `source`) to settle; shows job changes.

        Settled: finished, or waiting at a blocking manual job. Returns the pipeline with its jobs.
        """
        repo = self.gitlab().projects.get(project_id, lazy=True)
        deadline = time.monotonic() + appear_timeout
        pipeline = None
        while pipeline is None:
            found = [
                p
                for p in repo.pipelines.list(get_all=True)
                if p.id > newer_than and (source is None or p.source == source)
            ]
            if found:
                pipeline = min(found, key=lambda p: p.id)
                break
            if time.monotonic() > deadline:
                raise DemoError(
                    f"no new {label} pipeline{f' ({source})' if source else ''} appeared within "
                    f"{appear_timeout:.0f}s"
                )
            time.sleep(0.3)
        self.say(f"{label} pipeline #{pipeline.id} ({pipeline.source}, {pipeline.ref}): {pipeline.web_url}")
        return self._follow(repo, pipeline.id, label, timeout)

    def _follow(self, repo: Any, pipeline_id: int, label: str, timeout: float) -> dict[str, Any]:
        seen: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while True:
            pipeline = repo.pipelines.get(pipeline_id)
            jobs = sorted(pipeline.jobs.list(get_all=True), key=lambda j: j.id)
            for job in jobs:
                if seen.get(job.name) != job.status:
                    seen[job.name] = job.status
                    self.say(f"  {label} #{pipeline_id} {job.stage}/{job.name}: {job.status}")
            active = [j for j in jobs if j.status in ("created", "pending", "running")]
            if pipeline.status in SETTLED and not active:
                return {
                    **pipeline.attributes,
                    "jobs": {j.name: {"id": j.id, "status": j.status, "stage": j.stage} for j in jobs},
                }
            if time.monotonic() > deadline:
                raise DemoError(
                    f"{label} pipeline #{pipeline_id} still {pipeline.status} after {timeout:.0f}s"
                )
            time.sleep(0.5)

    def job_log(self, project_id: int, job_id: int) -> str:
        job = self.gitlab().projects.get(project_id, lazy=True).jobs.get(job_id)
        return bytes(job.trace()).decode("utf-8", "replace")

    def job_log_file(self, project_id: int, pipeline_id: int, job: str) -> Path:
        """Where the stand-in keeps a job's trace: logs/ci/<repository>-<pipeline>-<job>.log."""
        path = self.gitlab().projects.get(project_id).path
        return self.root / "logs" / "ci" / f"{path}-{pipeline_id}-{job}.log"

    def failed_job_reason(self, project_id: int, pipeline: Mapping[str, Any]) -> str:
        for name, job in pipeline["jobs"].items():
            if job["status"] == "failed":
                tail = [ln for ln in self.job_log(project_id, job["id"]).splitlines() if ln.strip()][-3:]
                path = self.job_log_file(project_id, pipeline["id"], name)
                return f"job {name} failed: {' | '.join(tail)[-300:]} (log: {path})"
        return f"pipeline #{pipeline['id']} is {pipeline['status']}"

    def pipeline_jobs(self, project_id: int, pipeline_id: int) -> dict[str, str]:
        repo = self.gitlab().projects.get(project_id, lazy=True)
        return {j.name: j.status for j in repo.pipelines.get(pipeline_id).jobs.list(get_all=True)}

    def merge_requests(self, project_id: int) -> list[dict[str, Any]]:
        repo = self.gitlab().projects.get(project_id, lazy=True)
        return [m.attributes for m in repo.mergerequests.list(state="all", get_all=True)]

    def environments(self, project_id: int) -> list[dict[str, Any]]:
        """GitLab environments of a repository with their last successful deployment."""
        repo = self.gitlab().projects.get(project_id, lazy=True)
        return [repo.environments.get(e.id).attributes for e in repo.environments.list(get_all=True)]

    def play(
        self, project_id: int, pipeline_id: int, job_name: str, label: str, timeout: float = 600
    ) -> dict[str, Any]:
        repo = self.gitlab().projects.get(project_id, lazy=True)
        jobs = {j.name: j for j in repo.pipelines.get(pipeline_id).jobs.list(get_all=True)}
        if job_name not in jobs:
            raise DemoError(
                f"pipeline #{pipeline_id} has no job {job_name!r}; it has: {', '.join(sorted(jobs))}"
            )
        if jobs[job_name].status != "manual":
            raise DemoError(
                f"job {job_name} of pipeline #{pipeline_id} is {jobs[job_name].status}, not manual"
            )
        repo.jobs.get(jobs[job_name].id, lazy=True).play()
        self.say(f"played {job_name} (job {jobs[job_name].id}) as a maintainer would in GitLab")
        return self._follow(repo, pipeline_id, label, timeout)

    def artifact(self, pipeline_id: int, job: str, name: str) -> Path | None:
        """A file a job kept as an artifact (gitlab-ci-local keeps them in the pipeline's checkout)."""
        base = (
            self.root / "gitlab" / "pipelines" / str(pipeline_id) / "src" / ".gitlab-ci-local" / "artifacts"
        )
        found = sorted((base / job).rglob(name)) if (base / job).is_dir() else []
        return found[0] if found else None

    # --- 4. model registry and events ---------------------------------------------------------------

    def packages(self, project: Project) -> list[dict[str, Any]]:
        listed = self.sm.list_model_packages(
            ModelPackageGroupName=project.package_group, SortBy="CreationTime", SortOrder="Ascending"
        )
        return [
            self.sm.describe_model_package(ModelPackageName=p["ModelPackageArn"])
            for p in listed["ModelPackageSummaryList"]
        ]

    def versions(self, project: Project) -> list[dict[str, Any]]:
        """Each registered version: status, where it came from (commit, branch, pipeline, merge request) and
        where it runs (the deploy pipeline's deployed-to:<stage> tags)."""
        found = []
        for package in self.packages(project):
            arn = package["ModelPackageArn"]
            metadata = package.get("CustomerMetadataProperties", {})
            tags = self.sm.list_tags(ResourceArn=arn).get("Tags", [])

            def known(value: str | None) -> str:
                return "" if value in (None, "", contract.METADATA_UNKNOWN) else str(value)

            found.append(
                {
                    "arn": arn,
                    "version": int(package.get("ModelPackageVersion", 0)),
                    "status": package["ModelApprovalStatus"],
                    "commit": known(package.get("MetadataProperties", {}).get("CommitId"))
                    or known(metadata.get(contract.METADATA_GIT_COMMIT)),
                    "branch": known(metadata.get(contract.METADATA_GIT_BRANCH)),
                    "pipeline_url": known(metadata.get(contract.METADATA_PIPELINE_URL)),
                    "merge_request_url": known(metadata.get(contract.METADATA_MERGE_REQUEST_URL)),
                    "description": package.get("ModelPackageDescription", ""),
                    "environments": sorted(
                        t["Key"].removeprefix(contract.TAG_DEPLOYED_PREFIX)
                        for t in tags
                        if t["Key"].startswith(contract.TAG_DEPLOYED_PREFIX)
                    ),
                }
            )
        return found

    def read_s3(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def metrics(self, package: Mapping[str, Any]) -> dict[str, Any]:
        # The SDK's ModelMetrics(model_statistics=...) is the API's ModelQuality.Statistics.
        uri = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
        return dict(json.loads(self.read_s3(uri)))

    def register_biased(self, project: Project, source: Mapping[str, Any], shift: float = 1.0) -> str:
        """A knob for the staging test: register a copy of `source` whose model predicts `shift` rings more
        (the booster's base_score moved), with the source's evaluation and held-out rows. Pending approval.

        The staging test must fail it: its predictions no longer match the evaluation it carries."""
        [container] = source["InferenceSpecification"]["Containers"]
        archive = shifted_archive(self.read_s3(container["ModelDataUrl"]), shift)
        key = f"sandbox/biased/v{source.get('ModelPackageVersion', 0)}-{shift:+g}/model.tar.gz"
        self.s3.put_object(Bucket=project.artifact_bucket, Key=key, Body=archive)
        copied = {k: v for k, v in container.items() if k in ("Image", "Environment", "Framework")}
        spec = {k: v for k, v in source["InferenceSpecification"].items() if k != "Containers"} | {
            "Containers": [{**copied, "ModelDataUrl": f"s3://{project.artifact_bucket}/{key}"}]
        }
        arn = self.sm.create_model_package(
            ModelPackageGroupName=project.package_group,
            ModelPackageDescription=f"sandbox knob: {source['ModelPackageArn']} biased by {shift:+g} rings",
            ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification=spec,
            ModelMetrics=source["ModelMetrics"],
            CustomerMetadataProperties=dict(source.get("CustomerMetadataProperties", {})),
        )["ModelPackageArn"]
        self.say(f"registered {arn}: {source['ModelPackageArn']} biased by {shift:+g} rings (sandbox knob)")
        return str(arn)

    def set_hosting(self, project: Project, mode: str) -> str:
        """Commit the mode's stage config files to the deploy repository's default branch (a push that
        deploys nothing: no [deploy] in the message). Returns the commit id."""
        repo = self.gitlab().projects.get(project.deploy_project_id)
        actions = [
            {
                "action": "update",
                "file_path": f"{stage}-config.json",
                "content": json.dumps(config, indent=2) + "\n",
            }
            for stage, config in hosting_configs(mode, project.artifact_bucket).items()
        ]
        commit = repo.commits.create(
            {
                "branch": repo.default_branch,
                "commit_message": f"Host staging and production {mode}",
                "actions": actions,
            }
        )
        self.say(
            f"{DEPLOY_REPO}: stage config files set to Hosting.Mode {mode} (commit {commit.id[:8]})"
        )
        project.hosting = mode
        project.save(self.root)
        return str(commit.id)

    def put_batch_input(self, project: Project, package: Mapping[str, Any], rows: int) -> str:
        """Raw records (the package's held-out rows, no target) where production's transform reads."""
        records = [",".join(r[1:]) for r in self.test_rows(package, rows)]
        key = f"{BATCH_INPUT_PREFIX}held-out.csv"
        self.s3.put_object(Bucket=project.artifact_bucket, Key=key, Body=("\n".join(records) + "\n").encode())
        return f"s3://{project.artifact_bucket}/{key}"

    def predict_async(
        self, project: Project, endpoint_name: str, rows: Sequence[Sequence[str]], timeout: float = 120
    ) -> list[float]:
        """Queue the records (input in S3, InvokeEndpointAsync); read the answer at its output location."""
        runtime = self.state.client("sagemaker-runtime")
        key = f"{ASYNC_DEMO_PREFIX}{int(time.time() * 1000)}.csv"
        body = "\n".join(",".join(r) for r in rows).encode()
        self.s3.put_object(Bucket=project.artifact_bucket, Key=key, Body=body)
        answer = runtime.invoke_endpoint_async(
            EndpointName=endpoint_name,
            InputLocation=f"s3://{project.artifact_bucket}/{key}",
            ContentType="text/csv",
            Accept="text/csv",
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = self.read_s3(answer["OutputLocation"]).decode()
                break
            except self.s3.exceptions.NoSuchKey:
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"{endpoint_name}: no async answer at {answer['OutputLocation']}"
                    ) from None
                time.sleep(0.3)
        return [float(v) for v in text.replace(",", "\n").split() if v.strip()]

    def emit(self, package_arn: str) -> Emission:
        return emit_model_package_change(self.sm, self.event_bridge(), package_arn)

    def set_status(self, package_arn: str, status: str) -> Emission:
        emission = set_approval(
            self.sm,
            self.event_bridge(),
            package_arn,
            status,
            description=f"{status} in the local sandbox demo",
        )
        for delivery in emission.deliveries:
            if delivery.not_delivered:
                raise DemoError(f"rule {delivery.rule}: {delivery.not_delivered}")
            if delivery.invocation is not None:
                delivery.invocation.raise_for_error()
        return emission

    # --- 5. endpoints and predictions ---------------------------------------------------------------

    def endpoint(self, project: Project, stage: str) -> dict[str, Any] | None:
        stack = project.endpoint_stack(stage)
        try:
            described = self.cfn.describe_stacks(StackName=stack)["Stacks"][0]
        except self.cfn.exceptions.ClientError:
            return None
        parameters = {p["ParameterKey"]: p["ParameterValue"] for p in described.get("Parameters", [])}
        if parameters.get("HostingMode") == "batch":  # the model only; moto fails on the skipped Endpoint
            return None
        resources = self.cfn.describe_stack_resources(StackName=stack, LogicalResourceId="Endpoint")
        physical = str(resources["StackResources"][0]["PhysicalResourceId"])
        name = physical.rsplit("endpoint/", 1)[-1]  # moto's physical id is the endpoint ARN
        described = self.sm.describe_endpoint(EndpointName=name)
        config = self.sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
        model = describe_model(
            self.sm, self.cfn, described["EndpointConfigName"], config["ProductionVariants"][0]["ModelName"]
        )
        container = model.get("PrimaryContainer", {})
        return {
            "name": name,
            "status": described["EndpointStatus"],
            "config": described["EndpointConfigName"],
            "model": model["ModelName"],
            "model_package": container.get("ModelPackageName", ""),
            "model_data": container.get("ModelDataUrl", ""),
            "stack": stack,
        }

    def test_rows(self, package: Mapping[str, Any], count: int) -> list[list[str]]:
        uri = package["CustomerMetadataProperties"][contract.METADATA_TEST_DATA_URI]
        rows = list(csv.reader(io.StringIO(self.read_s3(uri).decode())))
        return [r for r in rows if r][:count]

    def predict(self, endpoint_name: str, rows: Sequence[Sequence[str]]) -> list[float]:
        """Predictions for raw records (the model's input contract: sex,length,...,shell_weight)."""
        runtime = self.state.client("sagemaker-runtime")
        body = "\n".join(",".join(r) for r in rows)
        answer = runtime.invoke_endpoint(
            EndpointName=endpoint_name, ContentType="text/csv", Accept="text/csv", Body=body.encode()
        )
        text = answer["Body"].read().decode()
        return [float(v) for v in text.replace(",", "\n").split() if v.strip()]

    def refusal(self, endpoint_name: str, record: Sequence[str]) -> dict[str, Any]:
        """Send one mis-shaped record; what the endpoint answered (an error is expected)."""
        runtime = self.state.client("sagemaker-runtime")
        try:
            answer = runtime.invoke_endpoint(
                EndpointName=endpoint_name, ContentType="text/csv", Body=",".join(record).encode()
            )
        except runtime.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            return {
                "code": error.get("Code", ""),
                "status": exc.response.get("OriginalStatusCode"),
                "message": exc.response.get("OriginalMessage") or error.get("Message", ""),
            }
        return {"code": "", "status": 200, "message": answer["Body"].read().decode()[:200]}

    # --- 6. delete -----------------------------------------------------------------------------------

    def _stack_is_live(self, name: str) -> bool:
        try:
            status = self.cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
        except self.cfn.exceptions.ClientError:
            return False
        return str(status) != "DELETE_COMPLETE"

    def delete_project(self, project: Project) -> tuple[Deletion, dict[str, str]]:
        """Delete the project stack (custom resource Delete first) and check the deletion policy."""
        endpoint = self._endpoint()
        try:
            deletion = self._bridge(endpoint, project.extra_refs).delete_stack(project.stack_name)
        finally:
            endpoint.stop()
        for outcome in deletion.outcomes:
            outcome.raise_for_failure()
            self.say(outcome.message)
        gl = self.gitlab()
        states: dict[str, str] = {}
        for label, project_id in (
            (BUILD_REPO, project.build_project_id),
            (DEPLOY_REPO, project.deploy_project_id),
        ):
            try:
                repo = gl.projects.get(project_id)
            except gitlab.GitlabGetError as exc:
                if exc.response_code != 404:
                    raise
                states[label] = "deleted"
                continue
            states[label] = "archived" if repo.archived else "kept"
        expected = {"delete": "deleted", "archive": "archived", "retain": "kept"}[project.deletion_policy]
        wrong = {k: v for k, v in states.items() if v != expected}
        if wrong:
            raise DemoError(f"RepositoryDeletionPolicy {project.deletion_policy} not applied: {wrong}")
        # DeployStackDeletionPolicy is left at its default (delete): nothing of the project may still bill.
        left = [n for n in map(project.endpoint_stack, contract.STAGES) if self._stack_is_live(n)]
        if left:
            raise DemoError(f"deploy stacks left after the project was deleted: {', '.join(left)}")
        current = self.root / "project.json"
        if current.exists() and json.loads(current.read_text()).get("id") == project.id:
            current.rename(self.root / f"project-deleted-{project.id}.json")
        return deletion, states
