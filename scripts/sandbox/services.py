"""The sandbox's long-running servers, started together and described in `.sandbox/state.json`.

One process hosts them (the demo itself for a full run, or a detached `demo serve` for `demo up`):
moto (all of AWS the sandbox uses, with the gaps in moto_gaps.py filled) on 127.0.0.1, the GitLab
stand-in with a gitlab-ci-local pipeline runner behind an HTTPS terminator (certificate from the
sandbox's local CA), and the local sagemaker-runtime (`InferenceServer`: real-time, serverless and
asynchronous invocations, and the transform jobs moto records). Everything else the demo does
is a short client of these URLs, so a second process can pick up from `state.json`.

For people and plain git: `git-credentials` (git's credential store format, mode 600) holds the
stand-in's token for the HTTPS URL, and `ca/git-ca-bundle.pem` is the system's CA bundle plus the
sandbox CA, so `export GIT_SSL_CAINFO=<bundle>` (git's environment setting wins over any
http.sslCAInfo, and some machines set it already) breaks no other host, and `git clone -c
credential.helper="store --file=<credentials>" <url>` clones and later pushes from that clone. CI jobs get
the CA as CI_SERVER_TLS_CA_FILE, the variable GitLab runners set for a GitLab with a private CA.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import ssl
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from scripts import REPO_ROOT
from scripts.gitlab_standin.runner import RunContext

from . import iam_recorder, moto_fidelity
from .lambda_runner import moto_environment
from .moto_gaps import allow_cloudwatch_alarms_in_stacks, allow_model_package_tags

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
GROUP = "ml-team"
IAM_CALLS_FILE = "iam-calls.jsonl"
FAIL_FAST = Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=60)


@dataclass(frozen=True)
class State:
    """What a client needs to reach a running sandbox (written to `<root>/state.json`)."""

    root: str
    moto_url: str
    gitlab_url: str  # https, through the TLS terminator
    gitlab_http_url: str  # the stand-in itself
    inference_url: str
    ca_file: str
    token_file: str
    pid: int
    region: str = REGION
    account: str = ACCOUNT
    git_credentials_file: str = ""
    git_ca_bundle: str = ""

    @property
    def token(self) -> str:
        return Path(self.token_file).read_text().strip()

    def save(self) -> None:
        path = Path(self.root) / "state.json"
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, root: Path) -> State:
        return cls(**json.loads((root / "state.json").read_text()))

    def aws_env(self) -> dict[str, str]:
        """Variables for a process that must talk only to the sandbox's moto."""
        return moto_environment(self.moto_url, self.region)

    def client(self, service: str) -> Any:
        """A boto3 client of the sandbox: sagemaker-runtime is the local inference server, the rest moto."""
        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.inference_url if service == "sagemaker-runtime" else self.moto_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106
            config=FAIL_FAST,
        )


def id_token_for(gitlab_url: str) -> Callable[[RunContext], str]:
    """JWT-shaped GitLab ID tokens with the claims GitLab puts in them for a pipeline's jobs.

    Claims as GitLab documents them (https://docs.gitlab.com/ci/secrets/id_token_authentication/):
    `sub` = project_path:<path>:ref_type:branch:ref:<ref>, `aud` = the job's id_tokens audience
    (sts.amazonaws.com), `iss` = the GitLab URL, plus project_path, namespace_path, ref, ref_type,
    ref_protected and pipeline_source; in a merge request pipeline `ref` is the source branch (GitLab's
    CI_COMMIT_REF_NAME there). Unsigned: moto's AssumeRoleWithWebIdentity checks no signature,
    so the sandbox's IAM evaluation judges the claims against the roles' trust policies instead.
    """

    def part(data: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    def token(ctx: RunContext) -> str:
        now = int(time.time())
        namespace = ctx.project_path.rpartition("/")[0]
        branch = ctx.checkout_branch
        claims = {
            "iss": gitlab_url,
            "aud": "sts.amazonaws.com",
            "sub": f"project_path:{ctx.project_path}:ref_type:branch:ref:{branch}",
            "project_path": ctx.project_path,
            "namespace_path": namespace,
            "ref": branch,
            "ref_type": "branch",
            "ref_protected": "true" if ctx.ref_protected else "false",
            "pipeline_source": ctx.source,
            "pipeline_id": str(ctx.pipeline_id),
            "iat": now,
            "exp": now + 3600,
        }
        return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{part({'sandbox': 'unsigned'})}"

    return token


# The local inference server shares the machine's CPUs with the CI jobs and the test workers: its latency
# says nothing about a SageMaker endpoint's, so the staging test's p95 bound (1 s for real endpoints) is
# one a loaded CI machine keeps; the check itself still runs.
SANDBOX_STAGING_TEST = {"STAGING_TEST_MAX_P95_LATENCY_MS": "15000"}


def runner_environment(moto_url: str, inference_url: str, gitlab_url: str, ca_file: str) -> dict[str, str]:
    """What CI jobs get on top of the project's variables: the sandbox's switches and this venv first."""
    venv_bin = REPO_ROOT / ".venv" / "bin"
    path_parts = [str(venv_bin), str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]
    return {
        **moto_environment(moto_url, REGION),
        "PATH": os.pathsep.join(dict.fromkeys(path_parts)),
        "PIPELINE_RUN_MODE": "local",
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": inference_url,
        "SAGEMAKER_VALIDATE_ROLE": "false",
        "PIP_NO_INDEX": "1",  # a job that would install something fails fast instead of downloading
        **SANDBOX_STAGING_TEST,
        "CI_SERVER_TLS_CA_FILE": ca_file,  # a runner's tls-ca-file: jobs verify the stand-in's HTTPS
    }


def write_git_ca_bundle(path: Path, sandbox_ca: Path) -> None:
    """The CA bundle git already trusts (GIT_SSL_CAINFO or OpenSSL's default) with the sandbox CA added."""
    system = os.environ.get("GIT_SSL_CAINFO") or ssl.get_default_verify_paths().cafile or ""
    known = Path(system).read_text() if system and Path(system).is_file() else ""
    path.write_text(known.rstrip("\n") + ("\n" if known else "") + sandbox_ca.read_text())


def write_git_credentials(path: Path, https_url: str, token: str) -> None:
    """git's credential store file for the stand-in: any user name, the token as the password."""
    scheme, _, host = https_url.partition("://")
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(f"{scheme}://oauth2:{token}@{host}\n")


class Services:
    """The running servers; `stop()` ends them (and any pipeline still running) and is idempotent."""

    def __init__(self, root: Path) -> None:
        from moto.server import ThreadedMotoServer

        from scripts.gitlab_standin import GitlabCiLocalRunner, start_standin

        from .inference import InferenceServer, serve_transform_jobs, stop_serving_transform_jobs
        from .tls import LocalCA, TlsTerminator

        self.root = root
        # moto's Werkzeug server logs every request to stderr: keep the demo's output readable.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        # ... and its CloudFormation warns about every resource type it skips (stack_gaps reports those).
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", module=r"moto\..*")
        for sub in ("logs", "gitlab", "lambda"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._stack = contextlib.ExitStack()
        allow_model_package_tags()
        allow_cloudwatch_alarms_in_stacks()
        try:
            self.ca = LocalCA.create(root / "ca")
            self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            # Every call moto serves, with its principal, for the offline IAM judgement (scripts/iam).
            iam_recorder.install(root / IAM_CALLS_FILE)
            moto_fidelity.honour_sagemaker_names()
            self.moto.start()
            self._stack.callback(self.moto.stop)
            host, port = self.moto.get_host_and_port()
            moto_url = f"http://{host}:{port}"
            # Lambda keeps moto's default docker backend: with use_docker false, functions created by
            # CloudFormation are invisible to the Lambda API. Nothing runs in Docker (the sandbox runs them).
            self.state_stub = State(str(root), moto_url, "", "", "", str(self.ca.ca_file), "", os.getpid())
            self.inference = InferenceServer(
                self.state_stub.client("sagemaker"),
                self.state_stub.client("s3"),
                ACCOUNT,
                log_file=root / "logs" / "inference.log",
                cfn_client=self.state_stub.client("cloudformation"),
                calls_file=root / IAM_CALLS_FILE,
            ).start()
            self._stack.callback(self.inference.stop)
            # moto records transform jobs but runs nothing: the inference server runs them (inference.py).
            serve_transform_jobs(self.inference)
            self._stack.callback(stop_serving_transform_jobs, self.inference)
            gitlab_cert = self.ca.issue("gitlab")
            # The terminator needs the stand-in's port and the runner the terminator's URL: bind the
            # terminator after the stand-in and hand the stand-in its external URL then.
            self.runner = GitlabCiLocalRunner(timeout=600, live_file=root / "gitlab" / "live-runs.json")
            self.standin = start_standin(data_dir=root / "gitlab", groups=[GROUP], runner=self.runner,
                                         job_log_dir=root / "logs" / "ci")
            self._stack.callback(self.standin.stop)
            self._stack.callback(self.runner.kill_all)
            self.terminator = TlsTerminator(gitlab_cert, self.standin.port).start()
            self._stack.callback(self.terminator.stop)
            self.standin.set_external_url(self.terminator.url)
            self.runner.env.update(
                runner_environment(moto_url, self.inference.url, self.terminator.url, str(self.ca.ca_file))
            )
            self.runner.id_token = id_token_for(self.terminator.url)
            token_file = root / "gitlab-token"
            token_file.touch(mode=0o600)
            token_file.chmod(0o600)
            token_file.write_text(self.standin.token + "\n")
            credentials = root / "git-credentials"
            write_git_credentials(credentials, self.terminator.url, self.standin.token)
            bundle = root / "ca" / "git-ca-bundle.pem"
            write_git_ca_bundle(bundle, self.ca.ca_file)
            self.state = State(
                root=str(root),
                moto_url=moto_url,
                gitlab_url=self.terminator.url,
                gitlab_http_url=self.standin.url,
                inference_url=self.inference.url,
                ca_file=str(self.ca.ca_file),
                token_file=str(token_file),
                pid=os.getpid(),
                git_credentials_file=str(credentials),
                git_ca_bundle=str(bundle),
            )
            self.state.save()
        except BaseException:
            self._stack.close()
            raise

    def stop(self) -> None:
        self._stack.close()


def new_project_id() -> str:
    return "p-" + secrets.token_hex(6)
