"""The check-in under GitLab faults: lost responses after the change was applied, slow answers that
straddle the product's deadline, and a GitLab that stalls after N answers.

In every case CloudFormation receives exactly one answer, the product's own (never crhelper's
"Execution timed out"), with a non-empty physical id; and no repository is left orphaned, after the
rollback Delete CloudFormation sends for a failed Create (with the default `retain` policy, which must
not keep what a failed Create made).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from seedcode_checkin import core

from tests.integration.lambdas.conftest import World

BUILD, DEPLOY = "ml-team/abalone-model-build", "ml-team/abalone-model-deploy"
TIMED_OUT = "Execution timed out"  # crhelper's own reason when its timer answers


def projects(world: World) -> dict[str, Any]:
    return {p.path_with_namespace: p for p in world.gl.projects.list(get_all=True)}


def assert_product_answer(answer: dict[str, Any], status: str) -> None:
    assert answer["Status"] == status, answer.get("Reason")
    assert answer["PhysicalResourceId"], "the product answers with the physical id it has"
    assert TIMED_OUT not in str(answer.get("Reason"))


def rollback_delete(world: World, checkin: Any, failed: dict[str, Any]) -> dict[str, Any]:
    """The Delete CloudFormation sends after a failed Create: the answered id, default policy."""
    event = world.event("cfn_delete", DeletionPolicy="retain")
    event["PhysicalResourceId"] = failed["PhysicalResourceId"]
    answer: dict[str, Any] = checkin(event)
    return answer


def wait_idle(world: World, seconds: float) -> None:
    """Let requests the stand-in still holds (delayed answers) finish, so their effects are counted."""
    world.gitlab.clear_faults()
    time.sleep(seconds + 2)


def assert_no_orphans(world: World) -> None:
    left = projects(world)
    assert left == {}, f"orphaned repositories: {sorted(left)}"


def assert_complete(world: World) -> None:
    found = projects(world)
    assert set(found) == {BUILD, DEPLOY}
    assert all(core.INCOMPLETE_TOPIC not in p.topics for p in found.values())
    assert len(world.gl.projects.get(DEPLOY).triggers.list(get_all=True)) == 1


# --- lost response after the change was applied -------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [r"/api/v4/projects$", r"/repository/commits$", r"/variables$", r"/protected_branches$"],
)
def test_a_lost_answer_to_an_applied_create_is_recognised_and_create_succeeds(
    world: World, checkin: Any, path: str
) -> None:
    fault = world.gitlab.add_fault(path, 502, method="POST", after=True)
    answer = checkin(world.event("cfn_create"))
    assert_product_answer(answer, "SUCCESS")
    assert fault.hits == 1
    assert_complete(world)
    assert len(world.gitlab.requests("POST", r"/api/v4/projects$")) == 2 + (path.endswith("projects$"))


def test_lost_answers_that_fail_the_create_leave_nothing_behind(world: World, checkin: Any) -> None:
    world.gitlab.add_fault(r"/protected_branches$", 502, method="POST", after=True, count=None)
    answer = checkin(world.event("cfn_create"))
    assert_product_answer(answer, "FAILED")
    assert answer["Reason"].endswith(f"; removed {BUILD}, {DEPLOY}")
    assert_no_orphans(world)
    world.gitlab.clear_faults()
    assert_product_answer(rollback_delete(world, checkin, answer), "SUCCESS")
    assert_no_orphans(world)
    # and the same project can be created again: nothing "exists and was not created by" it
    assert_product_answer(checkin(world.event("cfn_create")), "SUCCESS")


# --- slow answers around the deadline ------------------------------------------------------------------
def test_a_slow_answer_that_still_fits_completes_the_create(world: World, checkin: Any) -> None:
    world.gitlab.add_fault(r"/triggers$", None, method="POST", delay=3)
    answer = checkin(world.event("cfn_create"), seconds=20)
    assert_product_answer(answer, "SUCCESS")
    assert_complete(world)


@pytest.mark.parametrize("delay", [4.0, 7.0])
def test_slow_commits_straddling_the_deadline_fail_the_create_without_orphans(
    world: World, checkin: Any, delay: float
) -> None:
    """10 s left: the first slow commit ends just before (4 s) or after (7 s) the work deadline."""
    world.gitlab.add_fault(r"/repository/commits$", None, method="POST", delay=delay, count=None)
    started = time.monotonic()
    answer = checkin(world.event("cfn_create"), seconds=10)
    assert time.monotonic() - started < 9.5, "answered before crhelper's timer (0.5 s before the end)"
    assert_product_answer(answer, "FAILED")
    assert "out of time" in answer["Reason"] or "timed out" in answer["Reason"]
    wait_idle(world, delay)
    if projects(world):  # cleanup ran out of time: the rollback Delete finishes it
        assert_product_answer(rollback_delete(world, checkin, answer), "SUCCESS")
    assert_no_orphans(world)


# --- GitLab stalls after N answers ----------------------------------------------------------------------
@pytest.mark.parametrize("answered", [5, 9, 20])  # one repository made, both made, seeded
def test_a_gitlab_that_stalls_after_n_answers_gets_the_products_answer_and_no_orphans(
    world: World, checkin: Any, answered: int
) -> None:
    # the check-in's first calls: token expiry, group, both names; then the two creates, ...
    world.gitlab.add_fault(r"/api/v4/", None, skip=answered, delay=9, count=None)
    started = time.monotonic()
    answer = checkin(world.event("cfn_create"), seconds=8)
    assert time.monotonic() - started < 7.5
    assert_product_answer(answer, "FAILED")
    wait_idle(world, 9)
    assert_product_answer(rollback_delete(world, checkin, answer), "SUCCESS")
    assert_no_orphans(world)


def test_a_failed_rename_keeps_the_old_id_and_removes_only_the_new_repository(
    world: World, checkin: Any
) -> None:
    created = checkin(world.event("cfn_create"))
    world.gitlab.add_fault(r"/repository/commits$", 400, method="POST", count=None)
    renamed = checkin(world.event("cfn_update_rename"))
    assert_product_answer(renamed, "FAILED")
    assert renamed["PhysicalResourceId"] == created["PhysicalResourceId"]
    assert renamed["Reason"].endswith("; removed ml-team/abalone-deploy-v2")
    assert set(projects(world)) == {BUILD, DEPLOY}  # the repositories in use are untouched
