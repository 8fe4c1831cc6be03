"""Judge recorded AWS calls as AWS would: would each principal's call have been allowed?

For every call a product principal made in the sandbox (scripts/sandbox/iam_recorder.py), the
requests AWS authorizes (scripts/iam/requests.py) are evaluated against that principal's identity
policies, its permissions boundary and the resource's policy, as the installation's templates define
them (scripts/iam/bundle.py). AssumeRoleWithWebIdentity calls are judged against the role's trust
policy with the token's `sub` and `aud` as the OIDC provider's condition keys. Calls by the sandbox
itself (the administrator's init.sh, the demo's own reads) are not judged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scripts.admin.cfn_yaml import load_template

from .bundle import Installation, OfflineStack
from .engine import evaluate, evaluate_trust
from .requests import Lookups, UnresolvedCall, authorize


@dataclass(frozen=True)
class StackSnapshot:
    """What the IAM model needs of one deployed stack (saved when it is created)."""

    name: str
    template: str
    parameters: Mapping[str, str]
    physical_ids: Mapping[str, str] = field(default_factory=dict)
    custom_data: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    principal: str
    action: str
    resource: str
    allowed: bool
    reason: str


@dataclass(frozen=True)
class Audit:
    verdicts: tuple[Verdict, ...]
    unresolved: tuple[str, ...]

    @property
    def denied(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.allowed]

    @property
    def principals(self) -> set[str]:
        return {v.principal for v in self.verdicts}

    def summary(self) -> str:
        return (
            f"{len(self.verdicts)} authorizations of {len(self.principals)} principals judged: "
            f"{len(self.denied)} denied, {len(self.unresolved)} unresolved"
        )


def save_snapshots(path: Path, snapshots: Iterable[StackSnapshot]) -> None:
    existing = {s.name: s for s in load_snapshots(path)}
    for snapshot in snapshots:
        existing[snapshot.name] = snapshot
    path.write_text(json.dumps([asdict(s) for s in existing.values()], indent=1), encoding="utf-8")


def load_snapshots(path: Path) -> list[StackSnapshot]:
    if not path.exists():
        return []
    return [StackSnapshot(**raw) for raw in json.loads(path.read_text(encoding="utf-8"))]


class _PinnedStack(OfflineStack):
    """An offline stack whose physical ids are the deployed ones where known (random secret suffixes)."""

    pinned: Mapping[str, str] = {}

    def physical_id(self, logical_id: str) -> str:
        if logical_id in self.pinned:
            return self.pinned[logical_id]
        return super().physical_id(logical_id)


def installation(snapshots: Iterable[StackSnapshot], account: str, region: str) -> Installation:
    world = Installation()
    for snapshot in snapshots:
        stack = _PinnedStack(
            load_template(snapshot.template), dict(snapshot.parameters), account, region, snapshot.name,
            {k: dict(v) for k, v in snapshot.custom_data.items()},
        )
        stack.pinned = dict(snapshot.physical_ids)
        world.add(stack)
    return world


def judge(calls: Iterable[Any], world: Installation, lookups: Lookups) -> Audit:
    """Evaluate every call of a principal the installation defines (others are the sandbox's own)."""
    models = world.principals()
    verdicts: list[Verdict] = []
    unresolved: list[str] = []
    for call in calls:
        if call.operation == "AssumeRoleWithWebIdentity":
            role = str(call.params.get("RoleArn", ""))
            if role in models and models[role].trust is not None:
                verdicts.append(_trust_verdict(models[role].trust, role, call.claims))
            continue
        if call.principal not in models:
            continue
        try:
            auth = authorize(call.service, call.operation, call.params, call.account, call.region, lookups,
                             call.s3_resource)
        except UnresolvedCall as exc:
            unresolved.append(f"{call.principal}: {exc}")
            continue
        principal = models[call.principal].principal
        for request in auth.requests:
            decision = evaluate(principal, request, world.resource_policy_for(request.resource))
            verdicts.append(Verdict(call.principal, request.action, request.resource, decision.allowed,
                                    decision.reason))
    return Audit(tuple(verdicts), tuple(unresolved))


def _trust_verdict(trust: Any, role: str, claims: Mapping[str, Any]) -> Verdict:
    provider = next(
        (p for s in trust.statements() for p in [s.get("Principal", {}).get("Federated")] if p), ""
    )
    issuer = str(provider).split(":oidc-provider/", 1)[-1]
    context = {f"{issuer}:sub": str(claims.get("sub", "")), f"{issuer}:aud": str(claims.get("aud", ""))}
    decision = evaluate_trust(trust, str(provider), "sts:AssumeRoleWithWebIdentity", context)
    return Verdict(f"token {claims.get('sub', '')}", "sts:AssumeRoleWithWebIdentity", role, decision.allowed,
                   decision.reason)
