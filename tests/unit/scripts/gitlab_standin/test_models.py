"""Backend rules without HTTP: naming, variables' masking rule, pipeline permission and status logic."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.gitlab_standin.exceptions import (
    BadRequest,
    Forbidden,
    NotFound,
    PipelineRefused,
    ValidationFailed,
)
from scripts.gitlab_standin.gitrepo import FileAction
from scripts.gitlab_standin.models import NO_JOBS, Backend, Variable
from scripts.gitlab_standin.runner import JobSink, JobSpec, PipelineConfigError, RunContext

CI = FileAction("create", ".gitlab-ci.yml", b"job:\n  script: [echo]\n")


class FakeRunner:
    """Plans the jobs it was given and reports scripted outcomes synchronously."""

    def __init__(self, specs: list[JobSpec], outcomes: dict[str, str], error: str | None = None) -> None:
        self.specs, self.outcomes, self.error = specs, outcomes, error
        self.contexts: list[RunContext] = []
        self.played: list[str] = []

    def plan(self, ctx: RunContext) -> list[JobSpec]:
        self.contexts.append(ctx)
        if self.error:
            raise PipelineConfigError(self.error)
        return list(self.specs)

    def run(self, ctx: RunContext, sink: JobSink) -> None:
        for spec in self.specs:
            if spec.when != "manual":
                sink.job_started(spec.name)
                sink.job_finished(spec.name, self.outcomes[spec.name], f"log of {spec.name} {ctx.variables}")

    def play(self, ctx: RunContext, job_name: str, sink: JobSink) -> None:
        self.played.append(job_name)
        sink.job_started(job_name)
        sink.job_finished(job_name, self.outcomes[job_name], "played")


def backend(tmp_path: Path, runner: FakeRunner | None = None, **kwargs: object) -> Backend:
    b = Backend(tmp_path, tokens=["t"], groups=["ml-team"], runner=runner, **kwargs)  # type: ignore[arg-type]
    b.base_url = "http://127.0.0.1:1"
    return b


def test_groups_resolve_by_id_or_encoded_path_and_nested_parents_are_created(tmp_path: Path) -> None:
    b = backend(tmp_path)
    nested = b.create_group("ml/team")
    assert b.namespace("ml%2Fteam", kind="group").id == nested.id
    assert b.namespace(str(nested.id)).full_path == "ml/team"
    assert b.namespace("ML-TEAM", kind="group").full_path == "ml-team"
    with pytest.raises(NotFound) as missing:
        b.namespace("nope", kind="group")
    assert missing.value.body == {"message": "404 Group Not Found"}


def test_second_project_with_same_path_is_refused_with_gitlabs_400(tmp_path: Path) -> None:
    b = backend(tmp_path)
    b.create_project(name="Build", path="build", namespace_id="ml-team")
    with pytest.raises(ValidationFailed) as taken:
        b.create_project(name="Other", path="BUILD", namespace_id="ml-team")
    assert taken.value.status == 400
    assert taken.value.body == {"message": {"path": ["has already been taken"]}}
    # Same path in another namespace is fine.
    assert b.create_project(name="Build", path="build", namespace_id=None).full_path == "standin-user/build"


def test_project_path_is_derived_from_name_and_validated(tmp_path: Path) -> None:
    b = backend(tmp_path)
    assert b.create_project(name="My Model Build", path=None, namespace_id="ml-team").path == "my-model-build"
    with pytest.raises(ValidationFailed):
        b.create_project(name="x", path="bad.git", namespace_id="ml-team")


@pytest.mark.parametrize(
    ("value", "raw", "ok"),
    [
        ("abcdefgh", False, True),
        ("AKIA/+=@:.~-_x", False, True),
        ("short", False, False),
        ("has space 123", False, False),
        ("with|pipe123", False, False),
        ("with|pipe123", True, True),
        ("two\nlines123", True, False),
    ],
)
def test_masked_variables_follow_gitlabs_rule(tmp_path: Path, value: str, raw: bool, ok: bool) -> None:
    b = backend(tmp_path)
    project = b.create_project(name="p", path="p", namespace_id="ml-team")
    var = Variable("SECRET", value, masked=True, raw=raw)
    if ok:
        assert b.create_variable(project, var).value == value
    else:
        with pytest.raises(ValidationFailed) as bad:
            b.create_variable(project, var)
        assert bad.value.body == {"message": {"value": ["is invalid"]}}


def test_duplicate_variable_key_is_refused_and_update_revalidates(tmp_path: Path) -> None:
    b = backend(tmp_path)
    project = b.create_project(name="p", path="p", namespace_id="ml-team")
    var = b.create_variable(project, Variable("K", "plain"))
    with pytest.raises(ValidationFailed) as dup:
        b.create_variable(project, Variable("K", "other"))
    assert dup.value.body == {"message": {"key": ["(K) has already been taken"]}}
    with pytest.raises(ValidationFailed):
        b.update_variable(project, var, {"masked": True})  # "plain" is too short to mask
    assert b.update_variable(project, var, {"value": "long-enough-value", "masked": True}).masked


def test_pipeline_variables_refused_while_override_role_is_no_one_allowed(tmp_path: Path) -> None:
    b = backend(tmp_path)
    project = b.create_project(name="p", path="p", namespace_id="ml-team")
    b.commit(project, branch="main", message="ci", actions=[CI])
    with pytest.raises(PipelineRefused) as refused:
        b.create_pipeline(project, "main", [{"key": "A", "value": "1"}])
    assert refused.value.body == {"message": {"base": ["Insufficient permissions to set pipeline variables"]}}
    assert b.create_pipeline(project, "main", []).status == "created"  # no variables: allowed
    b.update_project(project, {"ci_pipeline_variables_minimum_override_role": "developer"})
    pipeline = b.create_pipeline(project, "main", [{"key": "A", "value": "1"}])
    assert pipeline.variables == [{"key": "A", "value": "1", "variable_type": "env_var"}]


def test_pipeline_needs_an_existing_ref_and_a_ci_file(tmp_path: Path) -> None:
    b = backend(tmp_path, new_project_override_role="developer")
    project = b.create_project(name="p", path="p", namespace_id="ml-team")
    with pytest.raises(PipelineRefused, match="Reference not found"):
        b.create_pipeline(project, "main", [])
    b.commit(project, branch="main", message="x", actions=[FileAction("create", "a.txt", b"a")])
    with pytest.raises(PipelineRefused, match="Missing CI config file"):
        b.create_pipeline(project, "main", [])


def test_archived_project_refuses_commits_and_pipelines(tmp_path: Path) -> None:
    b = backend(tmp_path)
    project = b.create_project(name="p", path="p", namespace_id="ml-team")
    b.set_archived(project, True)
    with pytest.raises(Forbidden):
        b.commit(project, branch="main", message="x", actions=[CI])
    with pytest.raises(Forbidden):
        b.create_pipeline(project, "main", [])


def test_commit_to_unknown_branch_needs_start_branch_once_repo_has_commits(tmp_path: Path) -> None:
    b = backend(tmp_path)
    project = b.create_project(name="p", path="p", namespace_id="ml-team")
    first = b.commit(project, branch="main", message="one", actions=[CI])
    with pytest.raises(BadRequest, match="on a branch"):
        b.commit(project, branch="feature", message="two", actions=[FileAction("create", "b", b"b")])
    second = b.commit(project, branch="feature", message="two", start_branch="main",
                      actions=[FileAction("create", "b", b"b")])
    assert project.repo.commit_info(second).parent_ids == (first,)


def test_runner_outcomes_drive_job_and_pipeline_status(tmp_path: Path) -> None:
    specs = [JobSpec("build", "build"), JobSpec("test", "test"), JobSpec("prod", "deploy", "manual")]
    runner = FakeRunner(specs, {"build": "success", "test": "success", "prod": "success"})
    b = backend(tmp_path, runner, new_project_override_role="developer")
    project = b.create_project(name="p", path="p", namespace_id="ml-team")
    b.create_variable(project, Variable("PROJECT_VAR", "from-project"))
    b.create_variable(project, Variable("TOKEN", "s3cr3t-value", masked=True))
    b.commit(project, branch="main", message="ci", actions=[CI])  # push pipeline
    pipeline = b.create_pipeline(project, "main", [{"key": "PIPE", "value": "p1"}])
    done = b.wait_for_pipeline(pipeline.id, timeout=10)
    statuses = {j.name: j.status for j in done.jobs}
    assert statuses == {"build": "success", "test": "success", "prod": "manual"}
    assert done.status == "manual"  # a blocking manual job holds the pipeline
    ctx = runner.contexts[-1]
    assert ctx.source == "api" and ctx.variables["PIPE"] == "p1"
    assert ctx.variables["PROJECT_VAR"] == "from-project"
    build_log = next(j for j in done.jobs if j.name == "build").log
    assert "s3cr3t-value" not in build_log and "[MASKED]" in build_log
    assert [p.source for p in b.list_pipelines(project)] == ["api", "push"]

    prod = next(j for j in done.jobs if j.name == "prod")
    b.play_job(project, prod)
    b.wait_idle()
    assert runner.played == ["prod"]
    assert prod.status == "success" and b.pipelines[pipeline.id].status == "success"
    with pytest.raises(BadRequest):
        b.play_job(project, prod)  # no longer manual


def test_failed_job_fails_pipeline_unless_allowed_to_fail(tmp_path: Path) -> None:
    specs = [JobSpec("lint", "test", allow_failure=True), JobSpec("unit", "test")]
    runner = FakeRunner(specs, {"lint": "failed", "unit": "success"})
    b = backend(tmp_path, runner, pipelines_on_push=False)
    project = b.create_project(name="p", path="p", namespace_id="ml-team")
    b.commit(project, branch="main", message="ci", actions=[CI])
    assert b.list_pipelines(project) == []  # pushes start nothing when disabled
    assert b.wait_for_pipeline(b.create_pipeline(project, "main", []).id, 10).status == "success"
    runner.outcomes["unit"] = "failed"
    assert b.wait_for_pipeline(b.create_pipeline(project, "main", []).id, 10).status == "failed"


def test_rules_selecting_no_job_refuse_api_pipeline_and_skip_push(tmp_path: Path) -> None:
    runner = FakeRunner([], {})
    b = backend(tmp_path, runner)
    project = b.create_project(name="p", path="p", namespace_id="ml-team")
    b.commit(project, branch="main", message="ci", actions=[CI])
    assert b.list_pipelines(project) == []
    with pytest.raises(PipelineRefused) as refused:
        b.create_pipeline(project, "main", [])
    assert refused.value.body == {"message": {"base": [NO_JOBS]}}


def test_invalid_ci_config_refuses_api_pipeline_and_records_failed_push(tmp_path: Path) -> None:
    error = "jobs config should contain at least one visible job"
    runner = FakeRunner([JobSpec("a", "test")], {"a": "success"}, error=error)
    b = backend(tmp_path, runner)
    project = b.create_project(name="p", path="p", namespace_id="ml-team")
    b.commit(project, branch="main", message="ci", actions=[CI])
    assert [(p.source, p.status) for p in b.list_pipelines(project)] == [("push", "failed")]
    with pytest.raises(PipelineRefused, match="visible job"):
        b.create_pipeline(project, "main", [])


def test_reset_forgets_projects_but_keeps_seeded_groups(tmp_path: Path) -> None:
    b = backend(tmp_path)
    project = b.create_project(name="p", path="p", namespace_id="ml-team")
    repo_dir = project.repo.path
    b.reset()
    assert b.list_projects() == [] and not repo_dir.exists()
    assert b.namespace("ml-team", kind="group").kind == "group"
