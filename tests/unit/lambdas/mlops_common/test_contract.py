"""The names in contract.py are the ones the other parts actually use.

The seed repositories cannot import contract.py (they live in the user's GitLab), so these tests read
their CI files and scripts and fail when a name drifts.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from mlops_common import contract

ROOT = Path(__file__).resolve().parents[4]
SEEDS = ROOT / "seedcode"
CONTRACT_NAMES = {
    value for name, value in vars(contract).items() if name.startswith(("VAR_", "PIPELINE_VAR_"))
}
# Names the seeds use for their own purposes (not set by the platform).
SEED_LOCAL_NAMES = {
    "SAGEMAKER_VALIDATE_ROLE",  # SageMaker SDK v3 switch, set by the seed's tests
    "MODEL_PACKAGE_FILE",  # model-deploy: build artifact path between its jobs
    "PIPELINE_EXECUTION_ID",  # model-build: the execution the local runner creates
    # the serving container's environment the model-build seed registers (read by the XGBoost image)
    "SAGEMAKER_PROGRAM",
    "SAGEMAKER_SUBMIT_DIRECTORY",
    "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT",
    "SAGEMAKER_REGION",
    # model-build: optional run-pipeline switches a user may set as CI/CD variables
    "PIPELINE_STEP_CACHING",
    "PIPELINE_SPOT_TRAINING",
    "PIPELINE_TIMEOUT_MINUTES",
}
PLATFORM_NAME = re.compile(
    r"\b(SAGEMAKER_[A-Z_]+|MODEL_PACKAGE_[A-Z_]+|MODEL_APPROVAL_STATUS|ARTIFACT_BUCKET|AWS_AUTH_MODE"
    r"|PIPELINE_[A-Z_]+|AWS_ROLE_ARN)\b"
)


def _seed_files() -> list[Path]:
    return sorted(
        p
        for p in SEEDS.rglob("*")
        if p.is_file() and p.suffix in {".py", ".yml", ".yaml", ".json"} and "__pycache__" not in p.parts
    )


def test_model_package_group_name_joins_project_name_and_id() -> None:
    assert contract.model_package_group_name("churn", "p-abc123") == "churn-p-abc123"


@pytest.mark.parametrize("name", ["x" * 60, "bad_name", "-leading"])
def test_model_package_group_name_refuses_what_sagemaker_refuses(name: str) -> None:
    with pytest.raises(ValueError, match="model package group name"):
        contract.model_package_group_name(name, "p-abc123")


def test_endpoint_name_carries_the_project_id_and_refuses_an_unknown_stage() -> None:
    assert contract.endpoint_name("churn", "p-abc123", "staging") == "churn-p-abc123-staging"
    with pytest.raises(ValueError, match="unknown stage 'dev'"):
        contract.endpoint_name("churn", "p-abc123", "dev")


@pytest.mark.parametrize("project_id", ["p-abc-def", "abc123", "p-ABC", "p-" + "a" * 19])
def test_project_ids_are_what_sagemaker_issues(project_id: str) -> None:
    """No other hyphen after p-: so no id is a prefix of another's names (IAM scopes by it)."""
    with pytest.raises(ValueError, match="not a SageMaker project id"):
        contract.resource_name(project_id, "ci-build")


def test_no_bucket_name_contains_sagemaker() -> None:
    """AWS's SageMaker managed policies open every bucket whose name contains "sagemaker"."""
    assert "sagemaker" not in contract.artifacts_bucket_name("p-abc123", "123456789012", "us-east-1").lower()


@pytest.mark.parametrize("seed", ["model-build", "model-deploy"])
def test_seed_ci_jobs_ask_for_the_id_token_the_oidc_provider_trusts(seed: str) -> None:
    ci = yaml.safe_load((SEEDS / seed / ".gitlab-ci.yml").read_text())
    tokens = [job["id_tokens"] for job in ci.values() if isinstance(job, dict) and "id_tokens" in job]
    assert tokens, f"no job of {seed} asks for an OIDC id token"
    for token in tokens:
        assert token == {contract.CI_ID_TOKEN_NAME: {"aud": contract.OIDC_AUDIENCE}}


def test_deploy_pipelines_are_named_by_the_key_the_trigger_looks_up() -> None:
    """One approval = one pipeline only if the deploy CI names its pipelines from the trigger's key."""
    ci = yaml.load((SEEDS / "model-deploy" / ".gitlab-ci.yml").read_text(), Loader=_CiLoader)  # noqa: S506
    assert ci["workflow"].get("name") == f"${contract.PIPELINE_VAR_PIPELINE_NAME}"


class _CiLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML is installed without its stubs
    """CI files may use GitLab's `!reference` tag."""


_CiLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


@pytest.mark.parametrize("seed", ["model-build", "model-deploy"])
def test_seed_ci_switches_on_the_auth_mode_values_the_checkin_sets(seed: str) -> None:
    text = (SEEDS / seed / ".gitlab-ci.yml").read_text()
    assert contract.VAR_AUTH_MODE in text
    for mode in contract.AUTH_MODES:
        assert re.search(rf"(^|[\s\"'=(]){re.escape(mode)}([\s\"')]|$)", text, re.M), f"{seed} ignores {mode}"
    assert contract.VAR_WEB_IDENTITY_TOKEN_FILE in text


def test_seeds_use_only_platform_names_the_contract_defines() -> None:
    unknown: dict[str, set[str]] = {}
    for path in _seed_files():
        for name in PLATFORM_NAME.findall(path.read_text(errors="replace")):
            if name not in CONTRACT_NAMES and name not in SEED_LOCAL_NAMES:
                unknown.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert not unknown, f"names not in contract.py (typo, or add them there): {unknown}"


def test_deploy_seed_reads_every_variable_the_trigger_passes() -> None:
    used = "\n".join(p.read_text() for p in (SEEDS / "model-deploy").rglob("*.py"))
    used += (SEEDS / "model-deploy" / ".gitlab-ci.yml").read_text()
    for name in (
        contract.PIPELINE_VAR_MODEL_PACKAGE_ARN,
        contract.PIPELINE_VAR_MODEL_PACKAGE_GROUP,
        contract.PIPELINE_VAR_APPROVAL_STATUS,
    ):
        assert name in used, f"the model-deploy seed ignores {name}"


def test_build_seed_honours_the_local_run_switch() -> None:
    ci = (SEEDS / "model-build" / ".gitlab-ci.yml").read_text()
    assert f'"${{{contract.VAR_PIPELINE_RUN_MODE}:-}}" = "local"' in ci
    assert contract.VAR_PIPELINE_INPUT_DATA in ci


def test_provenance_and_deployment_names_match_the_seeds() -> None:
    build = (SEEDS / "model-build" / "pipelines").rglob("*.py")
    build_text = "\n".join(p.read_text() for p in build)
    for name in (
        contract.METADATA_GIT_COMMIT,
        contract.METADATA_GIT_BRANCH,
        contract.METADATA_PIPELINE_URL,
        contract.METADATA_MERGE_REQUEST_URL,
        contract.METADATA_UNKNOWN,
        contract.TAG_DEPLOYED_PREFIX,
        contract.VAR_MR_NOTE_TOKEN,
    ):
        assert f'"{name}"' in build_text, f"model-build does not use {name!r}"
    deploy_text = (SEEDS / "model-deploy" / "steps" / "common.py").read_text()
    assert f'DEPLOYED_TAG_PREFIX: Final = "{contract.TAG_DEPLOYED_PREFIX}"' in deploy_text
    assert contract.VAR_MR_NOTE_TOKEN in (SEEDS / "model-build" / ".gitlab-ci.yml").read_text()


def test_the_ci_jobs_other_parts_run_or_read_are_the_seeds_jobs() -> None:
    build = yaml.load((SEEDS / "model-build" / ".gitlab-ci.yml").read_text(), Loader=_CiLoader)  # noqa: S506
    deploy = yaml.load((SEEDS / "model-deploy" / ".gitlab-ci.yml").read_text(), Loader=_CiLoader)  # noqa: S506
    assert contract.BUILD_JOB_RUN_PIPELINE in build
    for job in (contract.DEPLOY_JOB_BUILD, contract.DEPLOY_JOB_STAGING, contract.DEPLOY_JOB_PROD):
        assert job in deploy, job
    assert {rule.get("when") for rule in deploy[contract.DEPLOY_JOB_PROD]["rules"]} == {"manual"}
    reports = deploy[contract.DEPLOY_JOB_STAGING]["artifacts"]["reports"]
    assert reports["junit"].endswith("/" + contract.STAGING_TEST_REPORT)


def test_the_deploy_seed_names_its_stacks_and_endpoints_as_the_contract_does() -> None:
    """The project's delete, the trigger's rollback and the IAM policies find what the seed created."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(
        "_deploy_seed_common", SEEDS / "model-deploy" / "steps" / "common.py"
    )
    assert spec is not None and spec.loader is not None
    common = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = common  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(common)
    finally:
        del sys.modules[spec.name]
    project = common.Project.from_env(
        {
            contract.VAR_PROJECT_NAME: "abalone",
            contract.VAR_PROJECT_ID: "p-abc123",
            contract.VAR_REGION: "eu-west-1",
            contract.VAR_ARTIFACT_BUCKET: "b",
            contract.VAR_MODEL_PACKAGE_GROUP: "abalone-p-abc123",
            contract.VAR_SAGEMAKER_EXECUTION_ROLE: "arn:aws:iam::123456789012:role/x",
        }
    )
    assert tuple(common.STAGES) == contract.STAGES
    for stage in contract.STAGES:
        assert project.stack_name(stage) == contract.deploy_stack_name("abalone", "p-abc123", stage)
        assert project.endpoint_name(stage) == contract.endpoint_name("abalone", "p-abc123", stage)
