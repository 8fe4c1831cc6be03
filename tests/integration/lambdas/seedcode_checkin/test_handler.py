"""Seed check-in custom resource end to end: moto (S3, Secrets Manager) + GitLab stand-in.

Every test asserts the exact body CloudFormation would receive, then GitLab's resulting state.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from mlops_common import contract
from mlops_common.secrets import secret_label

from scripts.gitlab_standin.testing import closed_port_url, seed_project
from tests.integration.lambdas.conftest import World
from tests.unit.lambdas.helpers import BINARY, BUILD_FILES, DEPLOY_FILES

BUILD, DEPLOY = "ml-team/abalone-model-build", "ml-team/abalone-model-deploy"
OWNER = contract.owner_topic("p-abc123def456")


def physical_id(world: World, build: str = BUILD, deploy: str = DEPLOY) -> str:
    return f"{world.gitlab_url.removeprefix('https://')}|{build}|{deploy}"


def commits(world: World, path: str) -> list[Any]:
    return list(world.gl.projects.get(path).commits.list(get_all=True))


def test_create_makes_and_seeds_both_repositories(world: World, checkin: Any) -> None:
    answer = checkin(world.event("cfn_create"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["PhysicalResourceId"] == physical_id(world)
    build, deploy = world.gl.projects.get(BUILD), world.gl.projects.get(DEPLOY)
    assert answer["Data"] == {
        "ModelBuildProjectId": str(build.id),
        "ModelBuildPath": BUILD,
        "ModelBuildCloneUrl": build.http_url_to_repo,
        "ModelDeployProjectId": str(deploy.id),
        "ModelDeployPath": DEPLOY,
        "ModelDeployCloneUrl": deploy.http_url_to_repo,
        "GitLabTokenWarning": "none",
    }
    assert OWNER in build.topics and OWNER in deploy.topics
    assert deploy.ci_pipeline_variables_minimum_override_role == "developer"
    # one commit per repository, holding every seed file
    for path, files in ((BUILD, BUILD_FILES), (DEPLOY, DEPLOY_FILES)):
        assert len(commits(world, path)) == 1
        tree = world.gl.projects.get(path).repository_tree(recursive=True, get_all=True)
        assert sorted(e["path"] for e in tree if e["type"] == "blob") == sorted(files)
    variables = {v.key: v for v in build.variables.list(get_all=True)}
    assert variables[contract.VAR_CI_ROLE].value.endswith("-ci-build")
    assert variables[contract.VAR_AUTH_MODE].value == "oidc"
    assert contract.VAR_SECRET_ACCESS_KEY not in variables
    deploy_variables = {v.key: v.value for v in deploy.variables.list(get_all=True)}
    assert deploy_variables[contract.VAR_CI_ROLE].endswith("-ci-staging")
    assert deploy_variables[contract.VAR_CI_PROD_ROLE].endswith("-ci-prod")
    # both default branches: only Maintainers push or merge
    for project in (build, deploy):
        protection = project.protectedbranches.get("main")
        assert [level["access_level"] for level in protection.push_access_levels] == [40]
        assert [level["access_level"] for level in protection.merge_access_levels] == [40]
    # the deploy repository's pipeline trigger is stored for the approval trigger
    stored = json.loads(
        world.aws_client("secretsmanager").get_secret_value(SecretId=world.trigger_arn)["SecretString"]
    )
    assert stored["project_id"] == deploy.id and stored["gitlab_url"] == world.gitlab_url
    assert [t.id for t in deploy.triggers.list(get_all=True)] == [stored["trigger_id"]]
    # nothing was triggered by the check-in itself
    assert not world.gitlab.requests("POST", r"/pipeline$")


def test_a_gitlab_url_the_token_is_not_bound_to_never_receives_it(
    world: World, checkin: Any, local_ca: Any
) -> None:
    """The token-redirect attack: a project pointing the check-in at a server its creator controls."""
    from scripts.gitlab_standin.testing import standin
    from scripts.sandbox.tls import TlsTerminator

    with standin() as attacker:
        front = TlsTerminator(local_ca.issue("attacker"), attacker.port).start()
        try:
            answer = checkin(world.event("cfn_create", GitLabUrl=front.url))
            assert attacker.requests() == []
        finally:
            front.stop()
    assert answer["Status"] == "FAILED"
    assert "is not the server the platform token belongs to" in answer["Reason"]
    assert world.gitlab.requests() == []


def test_binary_and_executable_files_round_trip(world: World, checkin: Any) -> None:
    assert checkin(world.event("cfn_create"))["Status"] == "SUCCESS"
    project = world.gl.projects.get(BUILD)
    raw = project.files.raw(file_path="img/logo.png", ref="main")
    assert raw == BINARY
    text = project.files.get(file_path="pipelines/run.py", ref="main")
    assert base64.b64decode(text.content) == str(BUILD_FILES["pipelines/run.py"]).encode()
    modes = {e["path"]: e["mode"] for e in project.repository_tree(recursive=True, get_all=True)}
    assert modes["scripts/run.sh"] == "100755" and modes["pipelines/run.py"] == "100644"


def test_variables_are_set_before_the_build_repositorys_first_commit(world: World, checkin: Any) -> None:
    checkin(world.event("cfn_create"))
    log = [f"{r['method']} {r['path']}" for r in world.gitlab.requests()]
    build_id = world.gl.projects.get(BUILD).id
    first_build_commit = log.index(f"POST /api/v4/projects/{build_id}/repository/commits")
    last_variable = max(
        i for i, line in enumerate(log) if line.startswith("POST") and line.endswith("/variables")
    )
    assert last_variable < first_build_commit


def test_repeat_create_adopts_and_does_not_push_again(world: World, checkin: Any) -> None:
    first = checkin(world.event("cfn_create"))
    second = checkin(world.event("cfn_create"))
    assert second["Status"] == "SUCCESS", second["Reason"]
    assert (second["PhysicalResourceId"], second["Data"]) == (first["PhysicalResourceId"], first["Data"])
    assert len(world.gitlab.requests("POST", r"/api/v4/projects$")) == 2
    assert len(commits(world, BUILD)) == 1 and len(commits(world, DEPLOY)) == 1


def test_update_reconciles_variables_and_keeps_the_id(world: World, checkin: Any) -> None:
    created = checkin(world.event("cfn_create"))
    answer = checkin(world.event("cfn_update", ArtifactBucket="new-artifacts", CiAuthMode="access-keys"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["PhysicalResourceId"] == created["PhysicalResourceId"]
    for path in (BUILD, DEPLOY):
        variables = {v.key: v for v in world.gl.projects.get(path).variables.list(get_all=True)}
        assert variables[contract.VAR_ARTIFACT_BUCKET].value == "new-artifacts"
        assert contract.VAR_CI_ROLE not in variables and contract.VAR_CI_PROD_ROLE not in variables
        secret = variables[contract.VAR_SECRET_ACCESS_KEY]
        assert secret.masked and secret.protected
        assert variables[contract.VAR_AUTH_MODE].value == "access-keys"
    deploy = {v.key: v for v in world.gl.projects.get(DEPLOY).variables.list(get_all=True)}
    assert (
        deploy[contract.VAR_PROD_ACCESS_KEY_ID].masked and deploy[contract.VAR_PROD_ACCESS_KEY_ID].protected
    )
    assert contract.VAR_PROD_ACCESS_KEY_ID not in {
        v.key for v in world.gl.projects.get(BUILD).variables.list(get_all=True)
    }
    assert len(commits(world, BUILD)) == 1  # the team's code is not re-seeded on update


def test_rotated_access_keys_reach_gitlab_on_update(world: World, checkin: Any) -> None:
    """Raising CiAccessKeySerial replaces the keys and their secrets; the update sets the new ones."""
    checkin(world.event("cfn_create", CiAuthMode="access-keys"))
    sm = world.aws_client("secretsmanager")
    rotated = {
        "AccessKeyId": "AKIAROTATEDKEY000001",
        "SecretAccessKey": "rotated/secret/key/value/0123456789abcdef",
    }
    sm.put_secret_value(SecretId=world.keys_arns["prod"], SecretString=json.dumps(rotated))
    answer = checkin(world.event("cfn_update", CiAuthMode="access-keys", CiAccessKeySerial="2"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    deploy = {v.key: v.value for v in world.gl.projects.get(DEPLOY).variables.list(get_all=True)}
    assert deploy[contract.VAR_PROD_ACCESS_KEY_ID] == rotated["AccessKeyId"]
    assert deploy[contract.VAR_PROD_SECRET_ACCESS_KEY] == rotated["SecretAccessKey"]


def test_rename_creates_new_repositories_and_old_delete_spares_the_one_still_used(
    world: World, checkin: Any
) -> None:
    created = checkin(world.event("cfn_create"))
    renamed = checkin(world.event("cfn_update_rename"))
    assert renamed["Status"] == "SUCCESS", renamed["Reason"]
    new_id = physical_id(world, deploy="ml-team/abalone-deploy-v2")
    assert renamed["PhysicalResourceId"] == new_id != created["PhysicalResourceId"]
    assert renamed["Data"]["ModelDeployPath"] == "ml-team/abalone-deploy-v2"
    assert renamed["Data"]["ModelBuildProjectId"] == created["Data"]["ModelBuildProjectId"]
    assert len(commits(world, "ml-team/abalone-deploy-v2")) == 1
    # CloudFormation then deletes the old physical resource, with the old properties
    old = world.event("cfn_delete")
    assert old["PhysicalResourceId"] == created["PhysicalResourceId"]
    answer = checkin(old)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    paths = {p.path_with_namespace for p in world.gl.projects.list(get_all=True)}
    assert paths == {BUILD, "ml-team/abalone-deploy-v2"}


@pytest.mark.parametrize("policy", ["retain", "archive", "delete"])
def test_delete_applies_the_policy(world: World, checkin: Any, policy: str) -> None:
    checkin(world.event("cfn_create", DeletionPolicy=policy))
    before = len(world.gitlab.requests())
    answer = checkin(world.event("cfn_delete", DeletionPolicy=policy))
    assert (answer["Status"], answer["PhysicalResourceId"]) == ("SUCCESS", physical_id(world))
    contacted = len(world.gitlab.requests()) > before
    projects = {p.path_with_namespace: p for p in world.gl.projects.list(get_all=True)}
    if policy == "retain":
        assert set(projects) == {BUILD, DEPLOY} and not any(p.archived for p in projects.values())
        assert contacted  # only to revoke the approval trigger
        assert not world.gl.projects.get(DEPLOY).triggers.list(get_all=True)
    elif policy == "archive":
        assert all(projects[p].archived for p in (BUILD, DEPLOY))
    else:
        assert not projects
    again = checkin(world.event("cfn_delete", DeletionPolicy=policy))
    assert again["Status"] == "SUCCESS", again["Reason"]  # gone already / repeated delete is success


def test_delete_never_touches_a_foreign_project(world: World, checkin: Any) -> None:
    seed_project(world.gitlab, BUILD, {"README.md": "theirs"}, topics=["someone-else"])
    answer = checkin(world.event("cfn_delete"))
    assert answer["Status"] == "SUCCESS"
    assert world.gl.projects.get(BUILD).topics == ["someone-else"]


def test_rejected_token(world: World, checkin: Any) -> None:
    world.aws_client("secretsmanager").put_secret_value(
        SecretId=world.token_arn, SecretString="glpat-wrong-token"
    )
    answer = checkin(world.event("cfn_create"))
    assert answer["Status"] == "FAILED"
    label = secret_label(
        world.token_arn
    )  # the name CloudFormation shows: gitlab-mlops-platform/gitlab-token-<suffix>
    assert label.startswith("gitlab-mlops-platform/gitlab-token-")
    assert (
        answer["Reason"]
        == f"GitLab token rejected (401) while reading the token's expiry: check secret {label}"
    )


def test_missing_group(world: World, checkin: Any) -> None:
    answer = checkin(world.event("cfn_create", GitLabGroup="ml/team"))
    assert answer["Status"] == "FAILED"
    assert answer["Reason"] == "GitLab group 'ml/team' not found (404): check the GitLabGroup parameter"


def test_name_taken_by_a_foreign_project(world: World, checkin: Any) -> None:
    seed_project(world.gitlab, DEPLOY, {"README.md": "theirs"})
    answer = checkin(world.event("cfn_create"))
    assert answer["Status"] == "FAILED"
    assert answer["Reason"] == (
        "GitLab project 'ml-team/abalone-model-deploy' exists and was not created by this SageMaker project "
        "(p-abc123def456); choose another repository name or delete it"
    )
    assert len(commits(world, DEPLOY)) == 1  # their repository is untouched


def test_rate_limit_with_retry_after_is_waited_out(world: World, checkin: Any) -> None:
    fault = world.gitlab.add_fault(r"/api/v4/projects$", 429, method="POST", retry_after=1)
    answer = checkin(world.event("cfn_create"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert fault.hits == 1


def test_server_errors_then_success(world: World, checkin: Any) -> None:
    fault = world.gitlab.add_fault(r"/repository/commits$", 502, method="POST", count=2)
    answer = checkin(world.event("cfn_create"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert fault.hits == 2
    assert len(commits(world, BUILD)) == 1 and len(commits(world, DEPLOY)) == 1


def test_persistent_server_errors_fail_within_bounded_attempts(world: World, checkin: Any) -> None:
    world.gitlab.add_fault(r"/api/v4/groups/", 500, count=None)
    answer = checkin(world.event("cfn_create"))
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].endswith(
        "failing (HTTP 500) after 3 attempts while reading group 'ml-team': try again later"
    )
    assert len(world.gitlab.requests("GET", r"/api/v4/groups/")) == 3


def test_unreachable_gitlab_fails_create_and_delete_but_retain_delete_succeeds(
    world: World, checkin: Any
) -> None:
    url = closed_port_url().replace("http://", "https://")
    world.aws_client("secretsmanager").tag_resource(
        SecretId=world.token_arn, Tags=[{"Key": "gitlab-mlops:gitlab-url", "Value": url}]
    )
    answer = checkin(world.event("cfn_create", GitLabUrl=url))
    assert answer["Status"] == "FAILED"
    assert answer["Reason"] == (
        f"GitLab at {url} unreachable after 3 attempts while reading the token's expiry: Connection refused"
    )
    delete = world.event("cfn_delete", GitLabUrl=url)
    assert checkin(delete)["Status"] == "FAILED"
    delete["ResourceProperties"]["DeletionPolicy"] = "retain"
    assert checkin(delete)["Status"] == "SUCCESS"


def test_token_never_reaches_logs_or_cloudformation(
    world: World, checkin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    checkin(world.event("cfn_create"))
    checkin(world.event("cfn_update"))
    world.gitlab.add_fault(r"/api/v4/projects/", 401, count=None)
    checkin(world.event("cfn_delete"))
    token = world.gitlab.token
    assert len(world.answers) == 3 and world.answers[-1]["Status"] == "FAILED"
    assert token not in caplog.text
    assert token not in json.dumps(world.answers)
