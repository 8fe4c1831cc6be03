"""Core lifecycle: exact calls, order and payloads against python-gitlab over a `responses` GitLab, and
what the repositories end up as against the in-memory `FakeGitLab`."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
import responses
from mlops_common import contract
from mlops_common.errors import GitLabRejected, GitLabUnavailable, ProjectNotOwned
from mlops_common.gitlab_client import GitLab, ProjectInfo
from mlops_common.secrets import AccessKeys, StoredTrigger
from seedcode_checkin import core
from seedcode_checkin.config import CheckinConfig, RepoTarget
from seedcode_checkin.seed import Seed, read_seed_zip

from tests.unit.lambdas.fake_gitlab import FakeGitLab
from tests.unit.lambdas.helpers import (
    API,
    BINARY,
    BUILD_FILES,
    DEPLOY_FILES,
    load_event,
    make_zip,
    project_json,
    sent_json,
    sent_url,
)

OWNER = contract.owner_topic("p-abc123def456")
BUILD, DEPLOY = "ml-team/abalone-model-build", "ml-team/abalone-model-deploy"
BUILD_URL, DEPLOY_URL = (
    f"{API}/projects/ml-team%2Fabalone-model-build",
    f"{API}/projects/ml-team%2Fabalone-model-deploy",
)
PHYSICAL_ID = f"gitlab.example.com|{BUILD}|{DEPLOY}"
IDS = {BUILD: 11, DEPLOY: 12}
TRIGGER_DESCRIPTION = "SageMaker project p-abc123def456 approval trigger"
# A stored trigger with a read token far from expiry: nothing to renew.
READY = StoredTrigger("glptt-kept", 7, 12, "https://gitlab.example.com", "glpat-read-kept", 5, "2099-01-01")
ROLES = {
    duty: f"arn:aws:iam::123456789012:role/gitlab-mlops/gitlab-mlops-p-abc123def456-ci-{duty}"
    for duty in contract.CI_DUTIES
}


class MemoryTriggers:
    """The deploy trigger secret, in memory."""

    def __init__(self, stored: StoredTrigger | None = None) -> None:
        self.stored, self.writes = stored, 0

    def read(self) -> StoredTrigger | None:
        return self.stored

    def write(self, trigger: StoredTrigger) -> None:
        self.stored, self.writes = trigger, self.writes + 1


def config(**changes: Any) -> CheckinConfig:
    props = dict(load_event("cfn_create")["ResourceProperties"])
    props.update(changes)
    return CheckinConfig.from_properties(props)


def seeds(key: str) -> Seed:
    return read_seed_zip(make_zip(BUILD_FILES if "build" in key else DEPLOY_FILES), key)


def body(call: responses.Call) -> Any:
    return sent_json(call.request)


def calls(rsps: responses.RequestsMock) -> list[str]:
    """'METHOD path' of every request, query string dropped."""
    return [f"{c.request.method} {sent_url(c.request).split('?')[0].removeprefix(API)}" for c in rsps.calls]


def new_world(rsps: responses.RequestsMock) -> None:
    """A GitLab with the group ml-team and nothing else; accepts every write."""
    rsps.get(f"{API}/groups/ml-team", json={"id": 3, "full_path": "ml-team"})
    rsps.get(BUILD_URL, status=404, json={"message": "404 Project Not Found"})
    rsps.get(DEPLOY_URL, status=404, json={"message": "404 Project Not Found"})

    def create_project(request: Any) -> tuple[int, dict[str, str], str]:
        data = json.loads(request.body)
        path = f"ml-team/{data['path']}"
        return 201, {}, json.dumps(project_json(IDS[path], path, data["topics"]))

    rsps.add_callback(
        responses.POST, f"{API}/projects", callback=create_project, content_type="application/json"
    )
    for pid in IDS.values():
        rsps.get(f"{API}/projects/{pid}/variables", json=[])
        rsps.post(f"{API}/projects/{pid}/variables", status=201, json={})
        rsps.get(f"{API}/projects/{pid}/repository/branches/main", status=404, json={"message": "404 Branch"})
        rsps.post(f"{API}/projects/{pid}/repository/commits", status=201, json={"id": "c0ffee"})
        protection(rsps, pid)
    rsps.put(f"{API}/projects/12", json=project_json(12, DEPLOY, [OWNER]))
    rsps.put(f"{API}/projects/11", json=project_json(11, BUILD, [OWNER]))
    rsps.post(
        f"{API}/projects/12/access_tokens",
        status=201,
        json={"id": 5, "token": "glpat-read-0123456789", "expires_at": "2027-12-01"},
    )
    rsps.get(f"{API}/projects/12/triggers", json=[])
    rsps.post(
        f"{API}/projects/12/triggers",
        status=201,
        json={"id": 7, "token": "glptt-0123456789abcdef", "description": TRIGGER_DESCRIPTION},
    )


def protection(rsps: responses.RequestsMock, pid: int, existing: int | None = None) -> None:
    """main of project `pid`: unprotected (None) or protected with push/merge level `existing`."""
    url = f"{API}/projects/{pid}/protected_branches/main"
    if existing is None:
        rsps.get(url, status=404, json={"message": "404 Not found"})
    else:
        levels = [{"access_level": existing}]
        rsps.get(url, json={"name": "main", "push_access_levels": levels, "merge_access_levels": levels})
        rsps.delete(url, status=204)
    rsps.post(f"{API}/projects/{pid}/protected_branches", status=201, json={"name": "main"})


def test_create_makes_both_projects_variables_then_seeds_in_order(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    new_world(rsps)
    outcome = core.create(gl, config(), seeds, None, MemoryTriggers())

    assert outcome.physical_id == PHYSICAL_ID
    assert outcome.data() == {
        "ModelBuildProjectId": "11",
        "ModelBuildPath": BUILD,
        "ModelBuildCloneUrl": f"https://gitlab.example.com/{BUILD}.git",
        "ModelDeployProjectId": "12",
        "ModelDeployPath": DEPLOY,
        "ModelDeployCloneUrl": f"https://gitlab.example.com/{DEPLOY}.git",
    }
    sequence = calls(rsps)
    # variables on both projects, and the deploy setting, come before any commit; deploy is seeded first
    first_commit = sequence.index("POST /projects/12/repository/commits")
    assert sequence.index("POST /projects/11/repository/commits") > first_commit
    assert max(i for i, c in enumerate(sequence) if c.endswith("/variables")) < first_commit
    assert sequence.index("PUT /projects/12") < first_commit
    assert not any("pipeline" in c for c in sequence)  # nothing is triggered by us

    created = [
        body(c)
        for c in rsps.calls
        if c.request.method == "POST" and sent_url(c.request).endswith("/projects")
    ]
    assert [p["path"] for p in created] == ["abalone-model-build", "abalone-model-deploy"]
    assert all(p["namespace_id"] == 3 and p["visibility"] == "private" for p in created)
    assert all(OWNER in p["topics"] and "SageMaker project abalone" in p["description"] for p in created)

    setting = next(body(c) for c in rsps.calls if c.request.method == "PUT")
    assert setting == {"ci_pipeline_variables_minimum_override_role": "developer"}


def test_create_pushes_every_seed_file_in_one_commit_binary_as_base64(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    new_world(rsps)
    core.create(gl, config(), seeds, None, MemoryTriggers())
    commits = {
        sent_url(c.request).split("/projects/")[1].split("/")[0]: body(c)
        for c in rsps.calls
        if "commits" in sent_url(c.request) and c.request.method == "POST"
    }
    build = commits["11"]
    assert build["branch"] == "main" and "Seed-Sha256:" in build["commit_message"]
    actions = {a["file_path"]: a for a in build["actions"]}
    assert sorted(actions) == sorted(BUILD_FILES)
    assert actions["img/logo.png"]["encoding"] == "base64"
    assert base64.b64decode(actions["img/logo.png"]["content"]) == BINARY
    assert {a["file_path"] for a in commits["12"]["actions"]} == set(DEPLOY_FILES)


def posted_variables(rsps: responses.RequestsMock, pid: int) -> dict[str, Any]:
    return {
        body(c)["key"]: body(c)
        for c in rsps.calls
        if sent_url(c.request).endswith(f"/projects/{pid}/variables") and c.request.method == "POST"
    }


def test_oidc_variables_are_plain_and_carry_each_repositorys_duty_roles(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    new_world(rsps)
    core.create(gl, config(), seeds, None, MemoryTriggers())
    common = {
        contract.VAR_PROJECT_NAME, contract.VAR_PROJECT_ID, contract.VAR_PROJECT_ARN, contract.VAR_REGION,
        contract.VAR_REGION_ALIAS, contract.VAR_ARTIFACT_BUCKET, contract.VAR_MODEL_PACKAGE_GROUP,
        contract.VAR_SAGEMAKER_EXECUTION_ROLE, contract.VAR_AUTH_MODE,
    }  # fmt: skip
    build, deploy = posted_variables(rsps, 11), posted_variables(rsps, 12)
    assert set(build) == common | {contract.VAR_CI_ROLE}
    assert set(deploy) == common | {contract.VAR_CI_ROLE, contract.VAR_CI_PROD_ROLE}
    assert build[contract.VAR_CI_ROLE]["value"] == ROLES["build"]
    assert deploy[contract.VAR_CI_ROLE]["value"] == ROLES["staging"]
    assert deploy[contract.VAR_CI_PROD_ROLE]["value"] == ROLES["prod"]
    assert build[contract.VAR_MODEL_PACKAGE_GROUP]["value"] == "abalone-p-abc123def456"
    assert not any(v["masked"] for v in [*build.values(), *deploy.values()])


def access_key_config() -> CheckinConfig:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gitlab-mlops/p-abc123def456/ci-{}-key-AbCdEf"
    return config(
        CiAuthMode="access-keys",
        **{f"Ci{d.capitalize()}RoleArn": "" for d in contract.CI_DUTIES},
        **{f"Ci{d.capitalize()}AccessKeySecretArn": arn.format(d) for d in contract.CI_DUTIES},
    )


def test_access_keys_per_duty_are_masked_and_protected() -> None:
    keys = {d: AccessKeys(f"AKIA{d.upper():X<12}", f"secret/{d}+abc") for d in contract.CI_DUTIES}
    build = {v.key: v for v in core.ci_variables(access_key_config(), core.BUILD, keys)}
    deploy = {v.key: v for v in core.ci_variables(access_key_config(), core.DEPLOY, keys)}
    assert contract.VAR_CI_ROLE not in build and contract.VAR_CI_PROD_ROLE not in deploy
    assert build[contract.VAR_ACCESS_KEY_ID].value == keys["build"].access_key_id
    assert contract.VAR_PROD_ACCESS_KEY_ID not in build
    assert deploy[contract.VAR_ACCESS_KEY_ID].value == keys["staging"].access_key_id
    assert deploy[contract.VAR_PROD_SECRET_ACCESS_KEY].value == keys["prod"].secret_access_key
    for variables in (build, deploy):
        for key in contract.SECRET_VARIABLES & set(variables):
            assert variables[key].masked and variables[key].protected
    assert build[contract.VAR_AUTH_MODE].value == "access-keys"


def test_create_protects_both_default_branches_for_maintainers(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    new_world(rsps)
    core.create(gl, config(), seeds, None, MemoryTriggers())
    protections = [body(c) for c in rsps.calls if sent_url(c.request).endswith("/protected_branches")]
    assert protections == [{"name": "main", "push_access_level": 40, "merge_access_level": 40}] * 2
    sequence = calls(rsps)
    assert sequence.index("POST /projects/12/protected_branches") > sequence.index(
        "POST /projects/12/repository/commits"
    )


def test_a_weaker_existing_protection_is_replaced(gl: GitLab, rsps: responses.RequestsMock) -> None:
    protection(rsps, 12, existing=30)
    assert gl.protect_branch(12, "main", core.MAINTAINER) == "tightened"
    assert calls(rsps) == [
        "GET /projects/12/protected_branches/main",
        "DELETE /projects/12/protected_branches/main",
        "POST /projects/12/protected_branches",
    ]


def test_an_existing_maintainer_protection_is_kept(gl: GitLab, rsps: responses.RequestsMock) -> None:
    protection(rsps, 12, existing=40)
    assert gl.protect_branch(12, "main", core.MAINTAINER) == "already protected"
    assert calls(rsps) == ["GET /projects/12/protected_branches/main"]


def test_create_gives_the_deploy_repository_a_trigger_and_stores_it(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    new_world(rsps)
    store = MemoryTriggers()
    core.create(gl, config(), seeds, None, store)
    assert store.stored is not None
    assert store.stored.read_token == "glpat-read-0123456789" and store.stored.read_token_id == 5
    assert store.stored == StoredTrigger(
        "glptt-0123456789abcdef",
        7,
        12,
        "https://gitlab.example.com",
        "glpat-read-0123456789",
        5,
        store.stored.read_token_expires,
    )
    token_request = next(body(c) for c in rsps.calls if sent_url(c.request).endswith("/access_tokens"))
    assert token_request["scopes"] == ["read_api"] and token_request["access_level"] == core.REPORTER
    created = [
        body(c)
        for c in rsps.calls
        if sent_url(c.request).endswith("/projects/12/triggers") and c.request.method == "POST"
    ]
    assert created == [{"description": TRIGGER_DESCRIPTION}]
    assert not any("/projects/11/triggers" in c for c in calls(rsps))


def test_a_valid_stored_trigger_is_kept_and_strays_are_revoked(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    rsps.get(
        f"{API}/projects/12/triggers",
        json=[
            {"id": 7, "description": TRIGGER_DESCRIPTION},
            {"id": 8, "description": TRIGGER_DESCRIPTION},
            {"id": 9, "description": "the team's own trigger"},
        ],
    )
    rsps.delete(f"{API}/projects/12/triggers/8", status=204)
    store = MemoryTriggers(READY)
    assert core.ensure_deploy_trigger(gl, project(12, DEPLOY), config().target, store) == "kept"
    assert store.writes == 0
    assert "DELETE /projects/12/triggers/8" in calls(rsps)
    assert "DELETE /projects/12/triggers/9" not in calls(rsps)


def test_a_read_token_about_to_expire_is_renewed_and_the_old_one_revoked(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    import datetime as dt

    rsps.get(f"{API}/projects/12/triggers", json=[{"id": 7, "description": TRIGGER_DESCRIPTION}])
    rsps.post(f"{API}/projects/12/access_tokens", status=201, json={"id": 6, "token": "glpat-read-new"})
    rsps.delete(f"{API}/projects/12/access_tokens/5", status=204)
    store = MemoryTriggers(
        StoredTrigger("glptt-kept", 7, 12, "https://gitlab.example.com", "r", 5, "2027-01-10")
    )
    today = dt.date(2027, 1, 1)  # expires in 9 days, within the 30-day warning window
    assert core.ensure_deploy_trigger(gl, project(12, DEPLOY), config().target, store, today) == "kept"
    assert store.stored is not None and store.stored.read_token == "glpat-read-new"
    assert store.stored.read_token_expires == "2028-01-01"
    assert "DELETE /projects/12/access_tokens/5" in calls(rsps)


def test_a_stored_trigger_that_gitlab_forgot_is_replaced(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/projects/12/triggers", json=[])
    rsps.post(f"{API}/projects/12/access_tokens", status=201, json={"id": 6, "token": "glpat-read-new"})
    rsps.post(
        f"{API}/projects/12/triggers", status=201, json={"id": 10, "token": "glptt-new", "description": "x"}
    )
    store = MemoryTriggers(StoredTrigger("glptt-revoked", 7, 12, "https://gitlab.example.com"))
    assert core.ensure_deploy_trigger(gl, project(12, DEPLOY), config().target, store) == "created"
    assert store.stored is not None and store.stored.trigger_id == 10 and store.stored.token == "glptt-new"


def test_reconcile_updates_changed_and_removes_stale_managed_variables(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    cfg = config()
    desired = core.ci_variables(cfg, core.BUILD, None)
    current = [
        {
            "key": v.key,
            "value": v.value,
            "masked": False,
            "protected": False,
            "raw": True,
            "environment_scope": "*",
        }
        for v in desired
        if v.key != contract.VAR_ARTIFACT_BUCKET
    ]
    current += [
        {"key": contract.VAR_ARTIFACT_BUCKET, "value": "old-bucket", "raw": True, "environment_scope": "*"},
        {"key": contract.VAR_ACCESS_KEY_ID, "value": "AKIAOLD", "masked": True, "environment_scope": "*"},
        {"key": "TEAM_OWN_VARIABLE", "value": "keep", "environment_scope": "*"},
    ]
    rsps.get(f"{API}/projects/11/variables", json=current)
    rsps.put(f"{API}/projects/11/variables/{contract.VAR_ARTIFACT_BUCKET}", json={})
    rsps.delete(f"{API}/projects/11/variables/{contract.VAR_ACCESS_KEY_ID}", status=204)
    core.reconcile_variables(gl, project(11, BUILD), desired)
    assert calls(rsps) == [
        "GET /projects/11/variables",
        f"PUT /projects/11/variables/{contract.VAR_ARTIFACT_BUCKET}",
        f"DELETE /projects/11/variables/{contract.VAR_ACCESS_KEY_ID}",
    ]
    assert body(rsps.calls[1])["value"] == "gitlab-mlops-p-abc123def456-123456789012-us-east-1"


def test_variable_taken_meanwhile_is_updated_instead(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/projects/11/variables", json=[])
    rsps.post(
        f"{API}/projects/11/variables", status=400, json={"message": {"key": ["has already been taken"]}}
    )
    rsps.put(re.compile(rf"{API}/projects/11/variables/\w+"), json={})
    core.reconcile_variables(gl, project(11, BUILD), core.ci_variables(config(), core.BUILD, None)[:1])
    assert calls(rsps)[-1] == f"PUT /projects/11/variables/{contract.VAR_PROJECT_NAME}"


def project(pid: int, path: str, topics: list[str] | None = None, archived: bool = False) -> Any:
    return ProjectInfo.from_api(project_json(pid, path, topics, archived))


def owned_world(rsps: responses.RequestsMock, seed_in_repo: bool) -> None:
    """Both projects exist with our owner topic (a retried Create)."""
    marker = core.resource_topic(PHYSICAL_ID)
    rsps.get(f"{API}/groups/ml-team", json={"id": 3, "full_path": "ml-team"})
    rsps.get(BUILD_URL, json=project_json(11, BUILD, [OWNER, marker]))
    rsps.get(DEPLOY_URL, json=project_json(12, DEPLOY, [OWNER, marker]))
    for pid, files, repo in ((11, BUILD_FILES, core.BUILD), (12, DEPLOY_FILES, core.DEPLOY)):
        existing = core.ci_variables(config(), repo, None)
        rsps.get(
            f"{API}/projects/{pid}/variables",
            json=[{"key": v.key, "value": v.value, "raw": True, "environment_scope": "*"} for v in existing],
        )
        rsps.get(f"{API}/projects/{pid}/repository/branches/main", json={"name": "main"})
        seed = read_seed_zip(make_zip(files), "s")
        tree = [{"path": f.path, "id": f.blob_id, "type": "blob", "mode": "100644"} for f in seed.files]
        if not seed_in_repo:
            tree[0]["id"] = "0" * 40
        rsps.get(f"{API}/projects/{pid}/repository/tree", json=tree)
        rsps.post(f"{API}/projects/{pid}/repository/commits", status=201, json={"id": "c1"})
        protection(rsps, pid, existing=40)
    rsps.put(f"{API}/projects/12", json={})
    rsps.get(f"{API}/projects/12/triggers", json=[{"id": 7, "description": TRIGGER_DESCRIPTION}])


def test_repeat_create_adopts_own_projects_and_does_not_push_again(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    owned_world(rsps, seed_in_repo=True)
    outcome = core.create(gl, config(), seeds, None, MemoryTriggers(READY))
    assert outcome.physical_id == PHYSICAL_ID
    sequence = calls(rsps)
    assert "POST /projects" not in sequence
    assert not any(c.endswith("/commits") for c in sequence)
    assert not any(c.startswith("POST") and c.endswith("/variables") for c in sequence)
    assert not any(
        c.startswith("POST") and ("/protected_branches" in c or "/triggers" in c) for c in sequence
    )


def test_repeat_create_pushes_one_update_commit_when_files_differ(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    owned_world(rsps, seed_in_repo=False)
    core.create(gl, config(), seeds, None, MemoryTriggers(READY))
    commits = [body(c) for c in rsps.calls if sent_url(c.request).endswith("/commits")]
    assert len(commits) == 2
    assert all(len(c["actions"]) == 1 and c["actions"][0]["action"] == "update" for c in commits)


def test_name_taken_but_invisible_reports_gitlabs_reason(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/groups/ml-team", json={"id": 3, "full_path": "ml-team"})
    rsps.get(BUILD_URL, status=404, json={"message": "404 Project Not Found"})
    rsps.get(DEPLOY_URL, status=404, json={"message": "404 Project Not Found"})
    rsps.post(f"{API}/projects", status=400, json={"message": {"path": ["has already been taken"]}})
    with pytest.raises(core.CreateFailed, match=r"\(400: path has already been taken\)$") as caught:
        core.create(gl, config(), seeds, None, MemoryTriggers())
    assert caught.value.physical_id == PHYSICAL_ID


def test_a_failed_create_removes_what_it_created_whatever_the_policy(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    new_world(rsps)
    rsps.replace(responses.POST, f"{API}/projects/12/repository/commits", status=400, json={"message": "bad"})
    rsps.get(f"{API}/projects/12/repository/branches/main", status=404, json={"message": "404 Branch"})
    rsps.delete(f"{API}/projects/11", status=202, json={})
    rsps.delete(f"{API}/projects/12", status=202, json={})
    with pytest.raises(core.CreateFailed) as caught:
        core.create(gl, config(DeletionPolicy="retain"), seeds, None, MemoryTriggers())
    assert str(caught.value).endswith(f"; removed {BUILD}, {DEPLOY}")
    assert caught.value.physical_id == PHYSICAL_ID
    assert {"DELETE /projects/11", "DELETE /projects/12"} <= set(calls(rsps))
    created = [
        body(c)
        for c in rsps.calls
        if c.request.method == "POST" and sent_url(c.request).endswith("/projects")
    ]
    assert all(core.INCOMPLETE_TOPIC in c["topics"] for c in created)


def test_the_rollback_delete_removes_repositories_a_failed_create_left(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    marker = core.resource_topic(PHYSICAL_ID)
    rsps.get(BUILD_URL, json=project_json(11, BUILD, [OWNER, marker, core.INCOMPLETE_TOPIC]))
    rsps.get(DEPLOY_URL, json=project_json(12, DEPLOY, [OWNER, marker]))
    rsps.delete(f"{API}/projects/11", status=202, json={})
    rsps.get(f"{API}/projects/12/triggers", json=[])
    report = core.delete(gl, target("retain"), PHYSICAL_ID)
    assert report == [f"{BUILD}: deleted (left by a failed Create)", f"{DEPLOY}: retained"]
    assert "DELETE /projects/12" not in calls(rsps)


def test_create_retried_by_gitlab_after_a_502_adopts_the_project_it_made(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    marker = core.resource_topic(PHYSICAL_ID)
    rsps.get(f"{API}/groups/ml-team", json={"id": 3, "full_path": "ml-team"})
    rsps.get(BUILD_URL, json=project_json(11, BUILD, [OWNER, marker, core.INCOMPLETE_TOPIC]))
    rsps.post(f"{API}/projects", status=502, json={"message": "502"})
    rsps.post(f"{API}/projects", status=400, json={"message": {"path": ["has already been taken"]}})
    created: list[ProjectInfo] = []
    namespace = core.resolve_namespace(gl, "ml-team")
    info = core.ensure_project(
        gl, namespace, "abalone-model-build", "build", config(), PHYSICAL_ID, None, created
    )
    assert info.id == 11
    assert [p.id for p in created] == [11]  # it counts as made by this Create


def test_empty_group_means_the_token_owners_namespace(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/user", json={"id": 1, "username": "alice"})
    namespace = core.resolve_namespace(gl, "")
    assert (namespace.id, namespace.full_path) == (None, "alice")


# --- delete -------------------------------------------------------------------------------------------
def target(policy: str) -> RepoTarget:
    return RepoTarget.from_properties(
        {**load_event("cfn_delete")["ResourceProperties"], "DeletionPolicy": policy}
    )


@pytest.mark.parametrize(
    ("policy", "method", "suffix"), [("archive", "POST", "/archive"), ("delete", "DELETE", "")]
)
def test_delete_applies_the_policy_to_our_projects(
    gl: GitLab, rsps: responses.RequestsMock, policy: str, method: str, suffix: str
) -> None:
    marker = core.resource_topic(PHYSICAL_ID)
    rsps.get(BUILD_URL, json=project_json(11, BUILD, [OWNER, marker]))
    rsps.get(DEPLOY_URL, json=project_json(12, DEPLOY, [OWNER, marker]))
    rsps.get(f"{API}/projects/12/triggers", json=[{"id": 7, "description": TRIGGER_DESCRIPTION}])
    rsps.delete(f"{API}/projects/12/triggers/7", status=204)
    for pid in (11, 12):
        rsps.add(method, f"{API}/projects/{pid}{suffix}", status=202 if method == "DELETE" else 201, json={})
    report = core.delete(gl, target(policy), PHYSICAL_ID)
    assert report == [
        f"{BUILD}: {policy}d",
        f"{DEPLOY}: 1 approval pipeline trigger(s) revoked",
        f"{DEPLOY}: {policy}d",
    ]
    assert "DELETE /projects/12/triggers/7" in calls(rsps)
    assert f"{method} /projects/11{suffix}" in calls(rsps) and f"{method} /projects/12{suffix}" in calls(rsps)


def test_delete_of_a_failed_create_uses_the_planned_paths(gl: GitLab, rsps: responses.RequestsMock) -> None:
    marker = core.resource_topic(PHYSICAL_ID)
    rsps.get(f"{API}/groups/ml-team", json={"id": 3, "full_path": "ml-team"})
    rsps.get(BUILD_URL, json=project_json(11, BUILD, [OWNER, marker]))
    rsps.get(DEPLOY_URL, status=404, json={"message": "404"})
    rsps.delete(f"{API}/projects/11", status=202, json={})
    report = core.delete(gl, target("delete"), "SC-stack_SeedRepositories_ABCDEFGH")
    assert report == [f"{BUILD}: deleted", f"{DEPLOY}: already gone"]


def test_project_deleted_between_read_and_delete_is_success(gl: GitLab, rsps: responses.RequestsMock) -> None:
    marker = core.resource_topic(PHYSICAL_ID)
    rsps.get(BUILD_URL, json=project_json(11, BUILD, [OWNER, marker]))
    rsps.get(DEPLOY_URL, status=404, json={"message": "404"})
    rsps.delete(f"{API}/projects/11", status=404, json={"message": "404"})
    assert core.delete(gl, target("delete"), PHYSICAL_ID)[0] == f"{BUILD}: already gone"


def test_physical_id_round_trip() -> None:
    assert core.parse_physical_id(PHYSICAL_ID) == ("gitlab.example.com", BUILD, DEPLOY)
    assert core.parse_physical_id("SC-stack_SeedRepositories_ABCDEFGH") is None


# --- against the in-memory GitLab: what the repositories end up as ------------------------------------
@pytest.fixture
def fake() -> FakeGitLab:
    """A GitLab with the group ml-team and nothing in it."""
    gitlab = FakeGitLab()
    gitlab.add_group("ml-team")
    return gitlab


def test_create_then_delete_leaves_seeded_protected_repositories_then_nothing(fake: FakeGitLab) -> None:
    store = MemoryTriggers()
    outcome = core.create(fake, config(), seeds, None, store)
    assert outcome.physical_id == PHYSICAL_ID
    build, deploy = fake.project(BUILD), fake.project(DEPLOY)
    assert fake.files(build.info.id, "main") == {
        path: content.encode() if isinstance(content, str) else content
        for path, content in BUILD_FILES.items()
    }
    assert set(fake.files(deploy.info.id, "main")) == set(DEPLOY_FILES)
    assert build.protected == deploy.protected == {"main": core.MAINTAINER}
    assert all(core.INCOMPLETE_TOPIC not in p.info.topics for p in (build, deploy))
    assert set(build.variables) == {v.key for v in core.ci_variables(config(), core.BUILD, None)}
    assert store.stored is not None and store.stored.project_id == deploy.info.id
    assert [token for _, token in deploy.triggers.values()] == [store.stored.token]

    report = core.delete(fake, target("delete"), outcome.physical_id)
    assert report == [
        f"{BUILD}: deleted",
        f"{DEPLOY}: 1 approval pipeline trigger(s) revoked",
        f"{DEPLOY}: deleted",
    ]
    assert fake.projects == {}


def test_update_does_not_overwrite_existing_code(fake: FakeGitLab) -> None:
    core.create(fake, config(), seeds, None, MemoryTriggers())
    deploy = fake.project(DEPLOY).info.id
    fake.commit(
        deploy, "main", "team", [{"action": "update", "file_path": "deploy.py", "content": "x = 2\n"}]
    )
    core.update(fake, config(), seeds, None, MemoryTriggers())
    assert fake.files(deploy, "main")["deploy.py"] == b"x = 2\n"


def test_foreign_project_with_the_same_path_is_refused(fake: FakeGitLab) -> None:
    fake.add_project(BUILD, topics=["someone-else"])
    with pytest.raises(ProjectNotOwned) as caught:
        core.create(fake, config(), seeds, None, MemoryTriggers())
    assert str(caught.value) == (
        "GitLab project 'ml-team/abalone-model-build' exists and was not created by this SageMaker project "
        "(p-abc123def456); choose another repository name or delete it"
    )
    assert [p.info.path_with_namespace for p in fake.projects.values()] == [BUILD]


def test_both_names_are_checked_before_either_repository_is_created(fake: FakeGitLab) -> None:
    fake.add_project(DEPLOY, topics=["someone-else"])
    with pytest.raises(ProjectNotOwned, match="abalone-model-deploy"):
        core.create(fake, config(), seeds, None, MemoryTriggers())
    assert "create_project" not in fake.calls


def test_a_project_created_by_a_post_whose_answer_was_lost_is_adopted(fake: FakeGitLab) -> None:
    # python-gitlab's retry of the lost POST meets our own project: "has already been taken".
    fake.fail(
        "create_project", GitLabRejected("GitLab refused creating project (400: path taken)"), after=True
    )
    core.create(fake, config(), seeds, None, MemoryTriggers())
    assert sorted(p.info.path_with_namespace for p in fake.projects.values()) == [BUILD, DEPLOY]
    assert all(core.INCOMPLETE_TOPIC not in p.info.topics for p in fake.projects.values())


def test_a_failed_create_removes_what_it_made_even_under_retain(fake: FakeGitLab) -> None:
    fake.fail("protect_branch", GitLabRejected("GitLab refused protecting branch main (400: bad)"))
    with pytest.raises(core.CreateFailed, match=rf"; removed {BUILD}, {DEPLOY}$") as caught:
        core.create(fake, config(DeletionPolicy="retain"), seeds, None, MemoryTriggers())
    assert caught.value.physical_id == PHYSICAL_ID
    assert fake.projects == {}


def test_what_a_failed_create_could_not_remove_goes_with_the_rollback_delete(fake: FakeGitLab) -> None:
    fake.fail("commit", GitLabUnavailable("GitLab at https://gitlab.example.com failing (HTTP 502)"))
    fake.fail("delete_project", GitLabUnavailable("GitLab failing (HTTP 502)"), times=2)
    with pytest.raises(core.CreateFailed, match=r"the rollback Delete removes them\)$") as caught:
        core.create(fake, config(), seeds, None, MemoryTriggers())
    assert all(core.INCOMPLETE_TOPIC in p.info.topics for p in fake.projects.values())
    report = core.delete(fake, target("retain"), caught.value.physical_id)
    assert report == [f"{path}: deleted (left by a failed Create)" for path in (BUILD, DEPLOY)]
    assert fake.projects == {}


def test_delete_leaves_gone_foreign_and_renamed_projects_alone(fake: FakeGitLab) -> None:
    fake.add_project(BUILD, topics=[OWNER, core.resource_topic("another-resource")])
    fake.add_project("ml-team/other", topics=["not-ours"])
    assert core.delete(fake, target("delete"), PHYSICAL_ID) == [
        f"{BUILD}: now used by a renamed resource of this project, left alone",
        f"{DEPLOY}: already gone",
    ]
    other = f"gitlab.example.com|ml-team/other|{DEPLOY}"
    assert (
        core.delete(fake, target("delete"), other)[0]
        == "ml-team/other: not created by this project, left alone"
    )
    assert len(fake.projects) == 2 and "delete_project" not in fake.calls


def test_delete_when_the_group_never_existed_is_success() -> None:
    assert core.delete(FakeGitLab(), target("delete"), "random-id") == [
        "group 'ml-team' not found: nothing was created"
    ]
