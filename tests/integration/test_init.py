"""init.sh against the moto server, in S3-template mode (moto has no Service Catalog).

The build directory is shared by the session, so the pinned wheels are downloaded once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scripts.admin import bootstrap

REPO = Path(__file__).resolve().parents[2]
INIT = REPO / "init.sh"
TOKEN = "glpat-integration-SECRET-4711"
OIDC_ARN = "arn:aws:iam::123456789012:oidc-provider/gitlab.example.com"
GITLAB_URL = "https://gitlab.example.com"
BUCKET = "gitlab-mlops-bundle-123456789012-us-east-1"  # the bootstrap stack names it (moto's account id)
TEMPLATE_KEY = "project-templates/gitlab-mlops.yml"
SECRET_NAME = bootstrap.DEFAULT_SECRET_NAME


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("init-build")


RunInit = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_init(aws: str, build_dir: Path) -> RunInit:
    """Run init.sh with the moto environment; returns the CompletedProcess."""

    def run(
        *args: str, token: str | None = TOKEN, stdin: str | None = None, path: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.pop("GITLAB_TOKEN", None)
        if token is not None:
            env["GITLAB_TOKEN"] = token
        if path is not None:
            env["PATH"] = path
        command = ["bash", str(INIT), "--mode", "s3-template", "--build-dir", str(build_dir), *args]
        return subprocess.run(
            command, env=env, input=stdin, capture_output=True, text=True, cwd=REPO, timeout=240, check=False
        )

    return run


def default_args() -> list[str]:
    return ["--gitlab-url", GITLAB_URL, "--oidc-provider-arn", OIDC_ARN]


def assert_ok(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"


def test_bootstrap_sets_up_bucket_artifacts_template_and_secret(
    run_init: RunInit, aws_client: Callable[[str], Any], build_dir: Path
) -> None:
    done = run_init(*default_args())
    assert_ok(done)
    s3, sm = aws_client("s3"), aws_client("secretsmanager")

    # The bootstrap stack owns the bucket (moto's CloudFormation applies its encryption; the template's
    # unit tests cover versioning, the public access block and the bucket policy).
    rules = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
    stacks = aws_client("cloudformation").describe_stacks(StackName="gitlab-mlops-bootstrap")["Stacks"]
    assert stacks[0]["StackStatus"] == "CREATE_COMPLETE"

    manifest = json.loads((build_dir / "manifest.json").read_text())
    for group in ("lambdas", "seeds"):
        for entry in manifest[group].values():
            body = s3.get_object(Bucket=BUCKET, Key=f"bundle/{entry['file']}")["Body"].read()
            assert body == (build_dir / entry["file"]).read_bytes()
            assert entry["file"].endswith(f"-{entry['sha256'][:12]}.zip")

    template = s3.get_object(Bucket=BUCKET, Key=TEMPLATE_KEY)["Body"].read().decode()
    defaults = {k: v.get("Default") for k, v in bootstrap.template_parameters(template).items()}
    assert defaults["BundleBucket"] == BUCKET
    assert defaults["CheckinLambdaKey"] == f"bundle/{manifest['lambdas']['seedcode_checkin']['file']}"
    assert defaults["TriggerLambdaKey"] == f"bundle/{manifest['lambdas']['pipeline_trigger']['file']}"
    assert defaults["ModelBuildSeedKey"] == f"bundle/{manifest['seeds']['model-build']['file']}"
    assert defaults["ModelDeploySeedKey"] == f"bundle/{manifest['seeds']['model-deploy']['file']}"
    assert defaults["GitLabOidcProviderArn"] == OIDC_ARN
    assert defaults["GitLabServerUrl"] == GITLAB_URL
    secret_arn = sm.describe_secret(SecretId=SECRET_NAME)["ARN"]
    assert defaults["GitLabTokenSecretArn"] == secret_arn
    # moto's user runs init.sh, so it is the bundle administrator and may reach project data.
    assert defaults["DataAccessPrincipalArns"] == "arn:aws:iam::123456789012:user/moto"
    tags = s3.get_object_tagging(Bucket=BUCKET, Key=TEMPLATE_KEY)["TagSet"]
    assert {"Key": "sagemaker:studio-visibility", "Value": "true"} in tags

    secret = sm.get_secret_value(SecretId=SECRET_NAME)["SecretString"]
    assert json.loads(secret) == {"token": TOKEN}
    assert {"Key": bootstrap.TOKEN_SERVER_TAG, "Value": GITLAB_URL} in sm.describe_secret(
        SecretId=SECRET_NAME
    )["Tags"]

    assert TOKEN not in done.stdout + done.stderr
    assert f"sagemaker:projectS3TemplatesLocation,Value=s3://{BUCKET}/project-templates/" in done.stdout


def _state(s3: Any, sm: Any) -> tuple[Any, ...]:
    versions = s3.list_object_versions(Bucket=BUCKET).get("Versions", [])
    secret_versions = sm.list_secret_version_ids(SecretId=SECRET_NAME)["Versions"]
    return (
        sorted((v["Key"], v["VersionId"]) for v in versions),
        sorted(v["VersionId"] for v in secret_versions),
        s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"],
    )


def test_second_run_changes_nothing_and_succeeds(run_init: RunInit, aws_client: Callable[[str], Any]) -> None:
    assert_ok(run_init(*default_args()))
    s3, sm = aws_client("s3"), aws_client("secretsmanager")
    before = _state(s3, sm)

    again = run_init(*default_args())
    assert_ok(again)
    assert _state(s3, sm) == before
    assert "uploaded " not in again.stdout and " created" not in again.stdout
    assert "unchanged" in again.stdout


def test_later_run_without_token_keeps_the_secret_and_a_new_token_via_stdin_replaces_it(
    run_init: RunInit, aws_client: Callable[[str], Any]
) -> None:
    assert_ok(run_init(*default_args()))
    kept = run_init(*default_args(), token=None)
    assert_ok(kept)
    assert "kept" in kept.stdout

    rotated = run_init(*default_args(), "--token-stdin", token=None, stdin="glpat-rotated-777\n")
    assert_ok(rotated)
    secret = aws_client("secretsmanager").get_secret_value(SecretId=SECRET_NAME)["SecretString"]
    assert json.loads(secret) == {"token": "glpat-rotated-777"}
    assert "glpat-rotated-777" not in rotated.stdout + rotated.stderr


def test_missing_token_fails_clearly_before_creating_anything(
    run_init: RunInit, aws_client: Callable[[str], Any]
) -> None:
    done = run_init(*default_args(), token=None)
    assert done.returncode == 1
    assert (
        "no GitLab token" in done.stderr and "GITLAB_TOKEN" in done.stderr and "--token-stdin" in done.stderr
    )
    assert "Traceback" not in done.stderr
    assert aws_client("s3").list_buckets()["Buckets"] == []


def test_token_on_the_command_line_is_refused_without_echoing_it(run_init: RunInit) -> None:
    done = run_init(*default_args(), "--token", TOKEN)
    assert done.returncode == 1
    assert "never taken from the command line" in done.stderr
    assert TOKEN not in done.stdout + done.stderr


def test_missing_aws_cli_is_reported(run_init: RunInit, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "python3", "grep", "tail", "env"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    done = run_init(*default_args(), path=str(bin_dir))
    assert done.returncode == 1
    assert "the AWS CLI is required" in done.stderr and "install" in done.stderr


def test_help_needs_neither_aws_cli_nor_credentials(run_init: RunInit, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "python3"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    done = run_init("--help", path=str(bin_dir), token=None)
    assert_ok(done)
    for option in (
        "--region",
        "--mode",
        "--gitlab-url",
        "--oidc-provider-arn",
        "--studio-role-arn",
        "--token-secret-name",
        "--token-stdin",
        "--stack-prefix",
        "--no-oidc",
        "--admin-principal-arn",
        "--data-access-principal-arn",
        "--gitlab-ca-bundle",
        "--lambda-subnet-ids",
        "GITLAB_TOKEN",
    ):
        assert option in done.stdout


@pytest.mark.parametrize(
    ("region", "message"),
    [("Europe-West", "is not a region name"), ("xx-nowhere-9", "unknown AWS region 'xx-nowhere-9'")],
)
def test_bad_region_is_reported(
    run_init: RunInit, aws_client: Callable[[str], Any], region: str, message: str
) -> None:
    done = run_init(*default_args(), "--region", region)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr
    assert aws_client("s3").list_buckets()["Buckets"] == []


def test_an_unreachable_endpoint_is_not_called_a_credentials_problem(
    run_init: RunInit, monkeypatch: pytest.MonkeyPatch, aws: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: sts cannot answer
    done = run_init(*default_args())
    assert done.returncode == 1
    assert "cannot reach AWS STS at http://127.0.0.1:9" in done.stderr and "AWS_ENDPOINT_URL" in done.stderr
    assert "no working AWS credentials" not in done.stderr and "Traceback" not in done.stderr


def test_missing_credentials_are_reported(
    run_init: RunInit, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, aws: str
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    done = run_init(*default_args())
    assert done.returncode == 1
    assert "no working AWS credentials" in done.stderr and "aws configure" in done.stderr


def test_aws_region_alone_is_enough(
    run_init: RunInit, monkeypatch: pytest.MonkeyPatch, aws_client: Callable[[str], Any]
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # AWS CLI v1 reads only this one; boto3 gets it from init.sh
    done = run_init(*default_args())
    assert_ok(done)
    assert "region us-east-1" in done.stdout
    assert aws_client("s3").head_bucket(Bucket=BUCKET)


def test_a_bad_region_from_the_environment_is_named_before_any_aws_call(
    run_init: RunInit, monkeypatch: pytest.MonkeyPatch, aws_client: Callable[[str], Any]
) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "Mars-1")
    done = run_init(*default_args())
    assert done.returncode == 1
    assert "region 'Mars-1' (--region, AWS_REGION or AWS_DEFAULT_REGION) is not a region name" in done.stderr
    assert aws_client("s3").list_buckets()["Buckets"] == []


def test_service_catalog_mode_without_studio_role_fails_before_calling_aws(
    run_init: RunInit, aws_client: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # an AWS call would fail differently
    done = run_init(*default_args(), "--mode", "service-catalog")
    assert done.returncode == 1
    assert "--studio-role-arn is required in service-catalog mode" in done.stderr
    assert aws_client("s3").list_buckets()["Buckets"] == []
    assert aws_client("cloudformation").list_stacks()["StackSummaries"] == []


def test_missing_gitlab_url_fails_before_creating_anything(
    run_init: RunInit, aws_client: Callable[[str], Any]
) -> None:
    done = run_init("--oidc-provider-arn", OIDC_ARN)
    assert done.returncode == 1
    assert "--gitlab-url is required" in done.stderr and "Traceback" not in done.stderr
    assert aws_client("secretsmanager").list_secrets()["SecretList"] == []


def test_a_token_bound_to_another_server_is_not_silently_rebound(
    run_init: RunInit, aws_client: Callable[[str], Any]
) -> None:
    assert_ok(run_init(*default_args()))
    moved = run_init(
        "--gitlab-url", "https://gitlab.other.example", "--oidc-provider-arn", OIDC_ARN, token=None
    )
    assert moved.returncode == 1
    assert f"holds a token for {GITLAB_URL}, not https://gitlab.other.example" in moved.stderr
    tags = aws_client("secretsmanager").describe_secret(SecretId=SECRET_NAME)["Tags"]
    assert {"Key": bootstrap.TOKEN_SERVER_TAG, "Value": GITLAB_URL} in tags
