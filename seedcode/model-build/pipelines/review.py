"""The model note on a merge request: the candidate's test metrics beside the latest Approved version's and
the production version's, the differences, and whether it passes the quality gate.

`run-pipeline --candidate --review` calls `post_from_ci` after the candidate's run; the numbers come from
the run's own `reports/evaluation.json` (the same file the job keeps as an artifact and the same numbers
as its metrics report), the baselines from the registry (each version's evaluation.json; the production
version is the one the model-deploy pipeline tagged `deployed-to:prod`).

One note per merge request, updated on each push: the note starts with a hidden marker and is looked up
by it among the token user's notes. GitLab's CI job token cannot write notes
(https://docs.gitlab.com/ci/jobs/ci_job_token/), so the job needs a token in the masked CI/CD variable
MR_NOTE_TOKEN: a project access token with the `api` scope and the Reporter role
(https://docs.gitlab.com/user/project/settings/project_access_tokens/). Without it the note is printed
to the job log and kept in the report directory, and the job says how to set the token.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

MARKER = "<!-- sagemaker-model-review -->"
TOKEN_VARIABLE = "MR_NOTE_TOKEN"  # noqa: S105 - a variable name, not a secret
NOTE_FILE = "mr-note.md"
DEPLOYED_TAG_PREFIX = "deployed-to:"  # the model-deploy pipeline's registry tag: deployed-to:<stage>
PRODUCTION = "prod"
APPROVED = "Approved"
METRIC_ORDER = ("mse", "rmse", "mae", "r2")
HIGHER_IS_BETTER = frozenset({"r2"})
MAX_TAGGED_LOOKUPS = 20  # approved versions inspected when looking for the production one


class ReviewError(Exception):
    """The note could not be posted; the message says why and what to fix."""


@dataclass(frozen=True)
class Baseline:
    """A registered version to compare with."""

    label: str
    version: int
    arn: str
    metrics: Mapping[str, float]
    commit: str = ""


@dataclass(frozen=True)
class Candidate:
    metrics: Mapping[str, float]
    test_rows: int | None
    mse_threshold: float | None
    gate_passed: bool | None
    commit: str = ""
    pipeline_url: str = ""
    merge_request: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


def metric_values(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """{metric: value} from an evaluation.json document."""
    return {name: float(v["value"]) for name, v in evaluation.get("regression_metrics", {}).items()}


def _ordered(names: Iterable[str]) -> list[str]:
    names = set(names)
    return [n for n in METRIC_ORDER if n in names] + sorted(names - set(METRIC_ORDER))


def _delta(name: str, candidate: float, baseline: float) -> str:
    difference = candidate - baseline
    if abs(difference) < 5e-5:
        return "±0.0000"
    better = (difference > 0) == (name in HIGHER_IS_BETTER)
    return f"{difference:+.4f} ({'better' if better else 'worse'})"


def render_note(candidate: Candidate, baselines: Sequence[Baseline], missing: Sequence[str] = ()) -> str:
    """The note's Markdown: a hidden marker, a metrics table, the gate, where the numbers come from."""
    title = "### Model candidate"
    if candidate.commit:
        title += f" at `{candidate.commit[:8]}`"
    headers = ["metric", "candidate"]
    for base in baselines:
        headers += [f"{base.label} (v{base.version})", "Δ"]
    lines = [MARKER, title, "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name in _ordered(candidate.metrics):
        value = candidate.metrics[name]
        row = [name, f"{value:.4f}"]
        for base in baselines:
            if name in base.metrics:
                row += [f"{base.metrics[name]:.4f}", _delta(name, value, base.metrics[name])]
            else:
                row += ["n/a", ""]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    mse = candidate.metrics.get("mse")
    if candidate.gate_passed is None or mse is None or candidate.mse_threshold is None:
        lines.append("**Quality gate:** unknown (no evaluation or threshold).")
    elif candidate.gate_passed:
        lines.append(f"**Quality gate: passes** — test MSE {mse:.4f} ≤ threshold {candidate.mse_threshold:g}. "
                     "Merging registers this model as a new version (PendingManualApproval).")
    else:
        lines.append(f"**Quality gate: fails** — test MSE {mse:.4f} is above the threshold "
                     f"{candidate.mse_threshold:g}. Merged as it is, the build would register nothing.")
    for note in missing:
        lines.append(f"- {note}")
    facts = []
    if candidate.test_rows is not None:
        facts.append(f"{candidate.test_rows} held-out test rows (each version is scored on its own run's split)")
    for base in baselines:
        facts.append(f"{base.label}: `{base.arn}`" + (f" (commit `{base.commit[:8]}`)" if base.commit else ""))
    if candidate.pipeline_url:
        facts.append(f"pipeline {candidate.pipeline_url} (artifact `reports/evaluation.json`)")
    lines += ["", "<sub>" + " · ".join(facts) + "</sub>" if facts else "",
              "", "<sub>Updated by CI on each push to this merge request.</sub>"]
    return "\n".join(lines).rstrip() + "\n"


# --- registry ------------------------------------------------------------------------------------------


def _evaluation(s3: Any, uri: str) -> dict[str, Any]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return dict(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def _baseline(sm: Any, s3: Any, arn: str, label: str) -> Baseline:
    described = sm.describe_model_package(ModelPackageName=arn)
    uri = described.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri", "")
    metrics = metric_values(_evaluation(s3, uri)) if uri else {}
    commit = described.get("MetadataProperties", {}).get("CommitId", "")
    commit = commit or described.get("CustomerMetadataProperties", {}).get("GitCommit", "")
    return Baseline(label, int(described.get("ModelPackageVersion", 0)), arn, metrics,
                    "" if commit == "none" else commit)


def registry_baselines(sm: Any, s3: Any, group: str) -> tuple[list[Baseline], list[str]]:
    """The latest Approved version and the production one (if different), and notes on what is missing."""
    approved = sm.list_model_packages(
        ModelPackageGroupName=group, ModelApprovalStatus=APPROVED, SortBy="CreationTime",
        SortOrder="Descending", MaxResults=MAX_TAGGED_LOOKUPS,
    )["ModelPackageSummaryList"]
    if not approved:
        return [], [f"No Approved version in {group} yet: nothing to compare with."]
    baselines = [_baseline(sm, s3, approved[0]["ModelPackageArn"], "latest approved")]
    notes: list[str] = []
    production = None
    try:
        for summary in approved:
            tags = sm.list_tags(ResourceArn=summary["ModelPackageArn"]).get("Tags", [])
            if any(t["Key"] == DEPLOYED_TAG_PREFIX + PRODUCTION for t in tags):
                production = summary["ModelPackageArn"]
                break
    except Exception as error:  # noqa: BLE001 - the note still helps without the production column
        notes.append(f"Production version unknown (cannot read the registry's tags: {error}).")
    if production is None and not notes:
        notes.append("No version is in production yet.")
    elif production == baselines[0].arn:
        baselines = [Baseline("latest approved = production", *_fields(baselines[0]))]
    elif production is not None:
        baselines.append(_baseline(sm, s3, production, "production"))
    return baselines, notes


def _fields(base: Baseline) -> tuple[int, str, Mapping[str, float], str]:
    return base.version, base.arn, base.metrics, base.commit


# --- GitLab --------------------------------------------------------------------------------------------


class NoteApi(Protocol):
    """The merge request's notes as python-gitlab offers them (`mr.notes`)."""

    def list(self, **kwargs: Any) -> Any: ...

    def create(self, data: dict[str, Any]) -> Any: ...


def upsert_note(notes: NoteApi, author_id: int, body: str) -> tuple[str, int]:
    """Update this user's marked note, or create it: ("updated"|"created", note id)."""
    for note in notes.list(get_all=True):
        if note.author.get("id") == author_id and str(note.body).startswith(MARKER):
            note.body = body
            note.save()
            return "updated", int(note.id)
    created = notes.create({"body": body})
    return "created", int(created.id)


def _gitlab_notes(env: Mapping[str, str]) -> tuple[NoteApi, int]:
    import gitlab

    verify: bool | str = env.get("CI_SERVER_TLS_CA_FILE") or True
    gl = gitlab.Gitlab(env["CI_SERVER_URL"], private_token=env[TOKEN_VARIABLE], ssl_verify=verify, timeout=30)
    try:
        gl.auth()
        project = gl.projects.get(env["CI_PROJECT_ID"], lazy=True)
        mr = project.mergerequests.get(env["CI_MERGE_REQUEST_IID"])
    except gitlab.GitlabAuthenticationError as error:
        raise ReviewError(f"{TOKEN_VARIABLE} was rejected ({error.response_code}): create a new project access "
                          "token (api scope, Reporter role) and update the CI/CD variable") from None
    except gitlab.GitlabError as error:
        raise ReviewError(f"GitLab refused reading merge request !{env['CI_MERGE_REQUEST_IID']} "
                          f"({error.response_code}): {error.error_message}") from None
    assert gl.user is not None
    return mr.notes, int(gl.user.id)


def candidate_from_reports(report_dir: Path) -> Candidate:
    try:
        run = json.loads((report_dir / "run.json").read_text())
    except (OSError, ValueError) as error:
        raise ReviewError(
            f"{report_dir / 'run.json'} is missing or not JSON ({error}); run-pipeline writes it"
        ) from None
    evaluation_file = report_dir / "evaluation.json"
    evaluation = json.loads(evaluation_file.read_text()) if evaluation_file.is_file() else {}
    provenance = run.get("provenance", {})
    return Candidate(
        metrics=metric_values(evaluation), test_rows=evaluation.get("test_rows"),
        mse_threshold=run.get("mse_threshold"), gate_passed=run.get("quality_gate_passed"),
        commit=str(provenance.get("GitCommit", "")).replace("none", ""),
        pipeline_url=str(provenance.get("GitLabPipelineUrl", "")).replace("none", ""),
    )


def post_from_ci(report_dir: Path, env: Mapping[str, str], sm: Any = None, s3: Any = None) -> int:
    """Build the note from the reports and the registry, write it to the report dir, post it; exit status."""
    try:
        candidate = candidate_from_reports(report_dir)
        if sm is None or s3 is None:
            import boto3

            session = boto3.Session(region_name=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION"))
            sm, s3 = session.client("sagemaker"), session.client("s3")
        baselines, missing = registry_baselines(sm, s3, env["MODEL_PACKAGE_GROUP_NAME"])
        body = render_note(candidate, baselines, missing)
        (report_dir / NOTE_FILE).write_text(body)
        if not env.get("CI_MERGE_REQUEST_IID"):
            print(f"review: not a merge request pipeline; the note is in {report_dir / NOTE_FILE}")
            return 0
        if not env.get(TOKEN_VARIABLE):
            print(body)
            print(f"review: {TOKEN_VARIABLE} is not set, so the note above was not posted on the merge request. "
                  "Create a project access token (Settings > Access tokens: role Reporter, scope api) and store "
                  f"it as the masked CI/CD variable {TOKEN_VARIABLE} (not protected: merge request pipelines "
                  "run on unprotected branches).")
            return 0
        notes, author = _gitlab_notes(env)
        action, note_id = upsert_note(notes, author, body)
        print(f"review: {action} note {note_id} on merge request !{env['CI_MERGE_REQUEST_IID']}")
        return 0
    except ReviewError as error:
        print(f"review: {error}", file=sys.stderr)
        return 1
    except KeyError as error:
        print(f"review: CI/CD variable {error.args[0]} is not set (it is needed to post the note)", file=sys.stderr)
        return 1
