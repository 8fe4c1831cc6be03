"""Backend rules without HTTP: naming, variables' masking rule, pipeline permission and status logic."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.gitlab_standin.exceptions import (
    BadRequest,
    Conflict,
    Forbidden,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    PipelineRefused,
    ValidationFailed,
)
from scripts.gitlab_standin.gitrepo import ZERO_SHA, FileAction
from scripts.gitlab_standin.models import (
    DEVELOPER,
    NO_JOBS,
    REPORTER,
    Backend,
    Project,
    Variable,
    default_merge_message,
    expand_variables,
)
from scripts.gitlab_standin.runner import JobSink, JobSpec, PipelineConfigError, PipelineFiltered, RunContext

CI = FileAction("create", ".gitlab-ci.yml", b"job:\n  script: [echo]\n")


class FakeRunner:
    """Plans the jobs it was given and reports scripted outcomes synchronously."""

    def __init__(self, specs: list[JobSpec], outcomes: dict[str, str], error: str | None = None,
                 filtered: bool = False, dotenv: dict[str, dict[str, str]] | None = None) -> None:
        self.specs, self.outcomes, self.error, self.filtered = specs, outcomes, error, filtered
        self.dotenv = dotenv or {}
        self.contexts: list[RunContext] = []
        self.played: list[str] = []

    def plan(self, ctx: RunContext) -> list[JobSpec]:
        self.contexts.append(ctx)
        if self.error:
            raise PipelineConfigError(self.error)
        if self.filtered:
            raise PipelineFiltered()
        return list(self.specs)

    def run(self, ctx: RunContext, sink: JobSink) -> None:
        for spec in self.specs:
            if spec.when != "manual":
                sink.job_started(spec.name)
                sink.job_finished(spec.name, self.outcomes[spec.name], f"log of {spec.name} {ctx.variables}",
                                  self.dotenv.get(spec.name))

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


def project_with_feature(b: Backend) -> tuple[Project, str, str]:
    """A project with CI on main and a branch `feature` one commit ahead: (project, main sha, feature sha)."""
    project = b.create_project(name="p", path="p", namespace_id="ml-team")
    main = b.commit(project, branch="main", message="ci", actions=[CI, FileAction("create", "a.txt", b"1\n")])
    feature = b.commit(project, branch="feature", message="Tune depth", start_branch="main",
                       actions=[FileAction("update", "a.txt", b"2\n")])
    b.wait_idle()
    return project, main, feature


def test_a_merge_request_pipeline_gets_gitlabs_variables_and_no_commit_branch(tmp_path: Path) -> None:
    runner = FakeRunner([JobSpec("review", "test")], {"review": "success"})
    b = backend(tmp_path, runner)
    project, _, feature = project_with_feature(b)
    mr = b.create_merge_request(project, b.user, source_branch="feature", target_branch="main", title="Tune")
    b.wait_idle()
    ctx = runner.contexts[-1]
    assert (ctx.source, ctx.ref, ctx.ref_name, ctx.sha) == (
        "merge_request_event", "refs/merge-requests/1/head", "feature", feature)
    assert "CI_COMMIT_BRANCH" in ctx.unset and "CI_COMMIT_BRANCH" not in ctx.predefined
    assert {k: ctx.predefined[k] for k in ("CI_MERGE_REQUEST_IID", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
                                           "CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "CI_MERGE_REQUEST_TITLE",
                                           "CI_MERGE_REQUEST_REF_PATH", "CI_COMMIT_REF_NAME")} == {
        "CI_MERGE_REQUEST_IID": "1", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main", "CI_MERGE_REQUEST_TITLE": "Tune",
        "CI_MERGE_REQUEST_REF_PATH": "refs/merge-requests/1/head", "CI_COMMIT_REF_NAME": "feature"}
    assert ctx.predefined["CI_COMMIT_BEFORE_SHA"] == ZERO_SHA
    assert project.repo.resolve("refs/merge-requests/1/head") == feature
    [pipeline] = b.mr_pipelines(project, mr)
    assert b.wait_for_pipeline(pipeline.id, 10).status == "success"


def test_a_push_to_the_source_branch_refreshes_the_request_and_starts_both_pipelines(tmp_path: Path) -> None:
    runner = FakeRunner([JobSpec("check", "test")], {"check": "success"})
    b = backend(tmp_path, runner)
    project, _, feature = project_with_feature(b)
    mr = b.create_merge_request(project, b.user, source_branch="feature", target_branch="main", title="Tune")
    b.wait_idle()
    runner.contexts.clear()
    newer = b.commit(project, branch="feature", message="more",
                     actions=[FileAction("update", "a.txt", b"3\n")])
    b.wait_idle()
    push, mr_pipeline = runner.contexts
    assert push.source == "push" and push.predefined["CI_COMMIT_BRANCH"] == "feature"
    assert push.predefined["CI_OPEN_MERGE_REQUESTS"] == "ml-team/p!1"
    assert push.predefined["CI_COMMIT_BEFORE_SHA"] == feature
    assert mr_pipeline.source == "merge_request_event" and mr_pipeline.sha == newer
    assert mr.sha == newer and project.repo.resolve(mr.ref_path) == newer


def test_merging_makes_gitlabs_merge_commit_and_starts_the_target_branch_pipeline(tmp_path: Path) -> None:
    runner = FakeRunner([JobSpec("build", "build")], {"build": "success"})
    b = backend(tmp_path, runner)
    project, main, feature = project_with_feature(b)
    mr = b.create_merge_request(project, b.user, source_branch="feature", target_branch="main", title="Tune")
    b.wait_idle()
    runner.contexts.clear()
    b.merge(project, mr, sha=feature, remove_source_branch=True)
    b.wait_idle()
    merged = project.repo.branches()["main"]
    info = project.repo.commit_info(merged)
    assert info.parent_ids == (main, feature)
    assert info.message == default_merge_message(project, mr) == (
        "Merge branch 'feature' into 'main'\n\nTune\n\nSee merge request ml-team/p!1")
    assert (mr.state, mr.merge_commit_sha) == ("merged", merged) and "feature" not in project.repo.branches()
    [ctx] = runner.contexts
    assert (ctx.source, ctx.ref, ctx.sha) == ("push", "main", merged)
    assert ctx.predefined["CI_COMMIT_MESSAGE"] == info.message
    assert ctx.predefined["CI_COMMIT_BEFORE_SHA"] == main
    with pytest.raises(MethodNotAllowed):
        b.merge(project, mr)  # already merged


def test_merge_refusals_follow_the_api(tmp_path: Path) -> None:
    b = backend(tmp_path)
    project, _, feature = project_with_feature(b)
    mr = b.create_merge_request(project, b.user, source_branch="feature", target_branch="main", title="Tune")
    with pytest.raises(Conflict, match="SHA does not match HEAD of source branch"):
        b.merge(project, mr, sha="0" * 40)
    b.commit(project, branch="main", message="clash", actions=[FileAction("update", "a.txt", b"main\n")])
    with pytest.raises(NotAcceptable, match="Branch cannot be merged"):
        b.merge(project, mr)
    assert mr.state == "opened" and project.repo.branches()["feature"] == feature
    b.update_merge_request(project, mr, {"state_event": "close"})
    with pytest.raises(MethodNotAllowed):
        b.merge(project, mr)


def test_merge_request_creation_is_validated_like_gitlab(tmp_path: Path) -> None:
    b = backend(tmp_path)
    project, _, _ = project_with_feature(b)
    with pytest.raises(ValidationFailed):
        b.create_merge_request(project, b.user, source_branch="main", target_branch="main", title="x")
    with pytest.raises(ValidationFailed, match="does not exist"):
        b.create_merge_request(project, b.user, source_branch="nope", target_branch="main", title="x")
    b.create_merge_request(project, b.user, source_branch="feature", target_branch="main", title="x")
    with pytest.raises(Conflict, match="Another open merge request already exists for this source branch"):
        b.create_merge_request(project, b.user, source_branch="feature", target_branch="main", title="y")


def test_notes_belong_to_their_author(tmp_path: Path) -> None:
    b = backend(tmp_path)
    project, _, _ = project_with_feature(b)
    mr = b.create_merge_request(project, b.user, source_branch="feature", target_branch="main", title="x")
    bot = b.create_access_token(project, "review", ["api"], REPORTER, None).user
    note = b.add_note(project, mr, bot, "first")
    b.update_note(mr, note, bot, "second")
    assert [n.body for n in mr.notes] == ["second"]
    other = b.create_access_token(project, "other", ["api"], REPORTER, None).user
    with pytest.raises(Forbidden):
        b.update_note(mr, note, other, "hijack")
    b.update_note(mr, note, b.user, "an admin may")
    b.delete_note(mr, note, bot)
    assert mr.notes == []


def test_project_access_tokens_are_bound_to_their_project_scopes_and_lifetime(tmp_path: Path) -> None:
    b = backend(tmp_path)
    project = b.create_project(name="p", path="p", namespace_id="ml-team")
    reader = b.create_access_token(project, "ci", ["read_repository"], REPORTER, None)
    principal = b.authenticate(reader.token)
    assert principal is not None and principal.project_id == project.id
    assert principal.may_read_code() and not principal.may_push_code() and not principal.may_read_api()
    pusher = b.authenticate(
        b.create_access_token(project, "push", ["write_repository"], DEVELOPER, None).token)
    assert pusher is not None and pusher.may_push_code()
    expired = b.create_access_token(project, "old", ["api"], REPORTER, "2000-01-01")
    assert b.authenticate(expired.token) is None
    admin = b.authenticate("t")
    assert admin is not None and admin.project_id is None  # the admin token
    b.delete_project(project)
    assert b.authenticate(reader.token) is None


def test_workflow_rules_that_filter_a_push_create_nothing_and_refuse_the_api(tmp_path: Path) -> None:
    b = backend(tmp_path, FakeRunner([JobSpec("a", "test")], {"a": "success"}, filtered=True))
    project = b.create_project(name="p", path="p", namespace_id="ml-team")
    b.commit(project, branch="main", message="ci", actions=[CI])
    assert b.list_pipelines(project) == []
    with pytest.raises(PipelineRefused) as refused:
        b.create_pipeline(project, "main", [])
    assert refused.value.body == {"message": {"base": ["Pipeline filtered out by workflow rules."]}}


def test_a_deploy_job_records_a_deployment_with_its_dynamic_url(tmp_path: Path) -> None:
    spec = JobSpec("deploy", "deploy", environment="staging", environment_url="$ENDPOINT_URL")
    runner = FakeRunner([spec], {"deploy": "success"},
                        dotenv={"deploy": {"ENDPOINT_URL": "https://console.example/endpoints/e1"}})
    b = backend(tmp_path, runner, job_log_dir=tmp_path / "logs")
    project = b.create_project(name="p", path="p", namespace_id="ml-team")
    b.commit(project, branch="main", message="ci", actions=[CI])
    b.wait_idle()
    [env] = b.environments(project)
    assert (env.name, env.external_url) == ("staging", "https://console.example/endpoints/e1")
    [deployment] = b.deployments(project, "staging")
    assert deployment.status == "success" and b.last_deployment(project, env) == deployment
    kept = tmp_path / "logs" / f"p-{deployment.pipeline_id}-deploy.log"
    assert kept.read_text().startswith("log of deploy")
    runner.outcomes["deploy"] = "failed"
    runner.dotenv = {}
    b.create_pipeline(project, "main", [])
    b.wait_idle()
    assert [d.status for d in b.deployments(project)] == ["success", "failed"]
    assert env.external_url == "https://console.example/endpoints/e1"


def test_variables_in_urls_expand_like_gitlab() -> None:
    values = {"HOST": "h", "ID": "7"}
    assert expand_variables("https://$HOST/x/${ID}/$MISSING", values) == "https://h/x/7/"
