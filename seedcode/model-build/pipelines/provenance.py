"""Where a model comes from: GitLab CI's predefined variables turned into the pipeline's provenance parameters.

GitLab sets CI_COMMIT_SHA, CI_COMMIT_BRANCH (branch pipelines), CI_MERGE_REQUEST_* (merge request
pipelines), CI_PIPELINE_URL, CI_PROJECT_URL and CI_COMMIT_MESSAGE in every job
(https://docs.gitlab.com/ci/variables/predefined_variables/). A push to the default branch made by
merging a merge request carries "See merge request <group/project>!<iid>" in its merge commit message
(GitLab's default merge commit template), which names the merge request. Outside CI the local git
checkout gives the commit and branch.

Values must fit SageMaker's CustomerMetadataProperties (1-256 characters of letters, digits, spaces and
`_.:/=+-@`) and pipeline parameters (at most 256 characters); "none" stands for unknown.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pipelines.abalone import pipeline as abalone

_MERGED_FROM = re.compile(r"^See merge request (?P<path>[\w.\-/]+)!(?P<iid>\d+)\s*$", re.M)
_NOT_ALLOWED = re.compile(r"[^\w\s.:/=+\-@]", re.UNICODE)
MAX_VALUE = 256

GitReader = Callable[[list[str]], str]


def _git(args: list[str]) -> str:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False, timeout=10)
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def metadata_value(text: str) -> str:
    """`text` made acceptable as a metadata value and a pipeline parameter (unknown: "none")."""
    clean = _NOT_ALLOWED.sub("_", text.strip())[:MAX_VALUE]
    return clean or abalone.UNKNOWN


@dataclass(frozen=True)
class Provenance:
    commit: str = ""
    branch: str = ""
    repository: str = ""
    pipeline_url: str = ""
    merge_request_url: str = ""

    @classmethod
    def from_ci(cls, env: Mapping[str, str], git: GitReader = _git) -> Provenance:
        commit = env.get("CI_COMMIT_SHA", "") or git(["rev-parse", "HEAD"])
        branch = (
            env.get("CI_COMMIT_BRANCH")
            or env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")
            or env.get("CI_COMMIT_REF_NAME")
            or (git(["rev-parse", "--abbrev-ref", "HEAD"]) if not env.get("CI") else "")
        )
        return cls(
            commit=commit,
            branch="" if branch == "HEAD" else branch,
            repository=env.get("CI_PROJECT_URL", ""),
            pipeline_url=env.get("CI_PIPELINE_URL", ""),
            merge_request_url=merge_request_url(env),
        )

    def parameters(self) -> dict[str, str]:
        """The pipeline parameters that carry this provenance into the registered version."""
        return {
            abalone.PARAM_COMMIT: metadata_value(self.commit),
            abalone.PARAM_BRANCH: metadata_value(self.branch),
            abalone.PARAM_REPOSITORY: metadata_value(self.repository),
            abalone.PARAM_PIPELINE_URL: metadata_value(self.pipeline_url),
            abalone.PARAM_MERGE_REQUEST_URL: metadata_value(self.merge_request_url),
        }


def merge_request_url(env: Mapping[str, str]) -> str:
    """The merge request this pipeline runs for, or the one whose merge made this commit; "" if none."""
    iid = env.get("CI_MERGE_REQUEST_IID", "")
    if iid:
        base = env.get("CI_MERGE_REQUEST_PROJECT_URL") or env.get("CI_PROJECT_URL", "")
        return f"{base}/-/merge_requests/{iid}" if base else ""
    found = _MERGED_FROM.search(env.get("CI_COMMIT_MESSAGE", ""))
    server = env.get("CI_SERVER_URL", "")
    if found and server:
        return f"{server.rstrip('/')}/{found.group('path')}/-/merge_requests/{found.group('iid')}"
    return ""
