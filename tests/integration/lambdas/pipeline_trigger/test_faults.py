"""The approval trigger under GitLab faults: exactly one deploy pipeline per approval.

Lambda retries a failed invocation (twice, then the dead-letter queue, whose re-drive sends the event
again), and SageMaker may send one change more than once: each delivery is one `trigger(...)` call here.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from mlops_common.errors import GitLabError, GitLabRejected

from tests.integration.lambdas.conftest import World
from tests.unit.lambdas.helpers import load_event

NAME = "deploy abalone-p-abc123def456 v3 (Approved at 2026-11-24T12:00:00Z)"


@pytest.fixture
def deploy_id(world: World, checkin: Any) -> str:
    answer = checkin(world.event("cfn_create"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    return str(answer["Data"]["ModelDeployProjectId"])


def pipelines(world: World, deploy_id: str) -> list[Any]:
    return list(world.gl.projects.get(int(deploy_id)).pipelines.list(get_all=True))


def served(world: World, deploy_id: str) -> None:
    """Wait until GitLab served the POST the invocation gave up on (Lambda retries a minute later)."""
    deadline = time.monotonic() + 15
    while not pipelines(world, deploy_id) and time.monotonic() < deadline:
        time.sleep(0.2)


def deliver_until_done(trigger: Any, deploy_id: str, event: dict[str, Any], **kwargs: Any) -> list[str]:
    """Lambda's first attempt and its two retries: the outcome of each."""
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(trigger(copy.deepcopy(event), deploy_id, **kwargs)["status"])
        except GitLabError as exc:
            outcomes.append(type(exc).__name__)
    return outcomes


def test_a_lost_answer_after_the_pipeline_started_starts_no_second_one(
    world: World, trigger: Any, deploy_id: str
) -> None:
    world.gitlab.add_fault(r"/trigger/pipeline$", 502, method="POST", after=True)
    outcomes = deliver_until_done(trigger, deploy_id, load_event("model_package_approved"))
    assert outcomes == ["GitLabUnavailable", "already started", "already started"]
    assert [p.name for p in pipelines(world, deploy_id)] == [NAME]
    assert len(world.gitlab.requests("POST", r"/trigger/pipeline$")) == 1


def test_a_slow_start_that_outlives_the_invocation_starts_no_second_one(
    world: World, trigger: Any, deploy_id: str
) -> None:
    """5 s left: GitLab answers the POST after 6 s, once the invocation gave up; the retry finds it."""
    world.gitlab.add_fault(r"/trigger/pipeline$", None, method="POST", delay=6)
    with pytest.raises(GitLabError):
        trigger(load_event("model_package_approved"), deploy_id, seconds=5)
    served(world, deploy_id)
    assert trigger(load_event("model_package_approved"), deploy_id)["status"] == "already started"
    assert [p.name for p in pipelines(world, deploy_id)] == [NAME]


def test_a_gitlab_that_stalls_after_the_lookup_starts_at_most_one(
    world: World, trigger: Any, deploy_id: str
) -> None:
    world.gitlab.add_fault(r"/api/v4/", None, skip=1, delay=7, count=1)
    with pytest.raises(GitLabError):
        trigger(load_event("model_package_approved"), deploy_id, seconds=5)
    served(world, deploy_id)
    outcomes = deliver_until_done(trigger, deploy_id, load_event("model_package_approved"))
    assert outcomes == ["already started"] * 3
    assert [p.name for p in pipelines(world, deploy_id)] == [NAME]


def test_an_outage_then_recovery_starts_exactly_one(world: World, trigger: Any, deploy_id: str) -> None:
    fault = world.gitlab.add_fault(r"/api/v4/", 503, count=None)
    outcomes = deliver_until_done(trigger, deploy_id, load_event("model_package_approved"))
    assert outcomes == ["GitLabUnavailable"] * 3  # the event goes to the dead-letter queue
    assert fault.hits == 9  # each delivery: the lookup, tried three times; no start was attempted
    assert world.gitlab.requests("POST", r"/trigger/pipeline$") == []
    world.gitlab.clear_faults()
    assert trigger(load_event("model_package_approved"), deploy_id)["status"] == "started"  # the re-drive
    assert trigger(load_event("model_package_approved"), deploy_id)["status"] == "already started"
    assert [p.name for p in pipelines(world, deploy_id)] == [NAME]


def test_a_400_is_sent_once_and_raised(world: World, trigger: Any, deploy_id: str) -> None:
    world.gitlab.add_fault(
        r"/trigger/pipeline$", 400, method="POST", body={"message": {"base": ["Reference not found"]}}
    )
    with pytest.raises(GitLabRejected, match="Reference not found"):
        trigger(load_event("model_package_approved"), deploy_id)
    assert len(world.gitlab.requests("POST", r"/trigger/pipeline$")) == 1


def test_duplicate_events_of_one_change_start_one_pipeline(
    world: World, trigger: Any, deploy_id: str
) -> None:
    first = load_event("model_package_approved")
    copy_of_it = copy.deepcopy(first)
    copy_of_it["id"] = "another-event-id"  # SageMaker's duplicates carry their own event ids
    assert trigger(first, deploy_id)["status"] == "started"
    assert trigger(copy_of_it, deploy_id)["status"] == "already started"
    assert len(pipelines(world, deploy_id)) == 1


def test_a_later_approval_of_the_same_version_deploys_again(
    world: World, trigger: Any, deploy_id: str
) -> None:
    first = load_event("model_package_approved")
    again = copy.deepcopy(first)
    again["detail"]["LastModifiedTime"] = 1764000000000  # approved again after a rejection
    assert trigger(first, deploy_id)["status"] == "started"
    assert trigger(again, deploy_id)["status"] == "started"
    assert len(pipelines(world, deploy_id)) == 2
