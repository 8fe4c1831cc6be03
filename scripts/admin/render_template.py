"""Render templates/project.yml for one installation: pin the administrator's parameters.

Every parameter that names a platform resource (the GitLab server, the token secret, the CA bundle, the
OIDC provider, the Lambda network, the bundle objects, who may reach project data) gets its value as
`Default` and an `AllowedPattern` that matches exactly that value (a list parameter: each of the
administrator's values), so CloudFormation refuses any other value whoever creates the project
(AllowedPattern applies to the whole String value, and to each element of a CommaDelimitedList).
CiAuthMode defaults to access-keys when the installation has no OIDC provider (its Rule refuses oidc).

The template is parsed into a YAML node tree (CloudFormation short-form tags such as !Ref, !Sub and
!GetAtt are kept as they are), the parameters are edited, and the tree is emitted again. Nothing is
string-replaced, and each value is checked against the parameter's own constraints (AllowedPattern,
MaxLength) so a bad bundle fails here rather than in Studio.

    python -m scripts.admin.render_template --manifest build/manifest.json --bucket BUCKET \
        --gitlab-url URL --token-secret-arn ARN --data-access-principal-arn ARN [...] --out build/project.yml
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from scripts import REPO_ROOT

DEFAULT_TEMPLATE = REPO_ROOT / "templates" / "project.yml"
DEFAULT_PREFIX = "bundle"
STR_TAG = "tag:yaml.org,2002:str"

# Template parameter -> (manifest section, manifest entry) whose file becomes the S3 key.
MANIFEST_KEYS: dict[str, tuple[str, str]] = {
    "CheckinLambdaKey": ("lambdas", "seedcode_checkin"),
    "TriggerLambdaKey": ("lambdas", "pipeline_trigger"),
    "ModelBuildSeedKey": ("seeds", "model-build"),
    "ModelDeploySeedKey": ("seeds", "model-deploy"),
}
BUCKET_PARAMETER = "BundleBucket"
RENDERED_HEADER = (
    "# Rendered by scripts/admin/render_template.py from templates/project.yml; edit that, not this file.\n"
)
OIDC_PARAMETER = "GitLabOidcProviderArn"
AUTH_MODE_PARAMETER = "CiAuthMode"
ACCESS_KEYS = "access-keys"


@dataclass(frozen=True)
class Platform:
    """The administrator's settings that every project of this installation uses."""

    gitlab_url: str
    token_secret_arn: str
    data_access_principal_arns: tuple[str, ...]
    oidc_provider_arn: str = ""
    ca_bundle_s3_uri: str = ""
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)

    def pinned(self) -> dict[str, str | tuple[str, ...]]:
        return {
            "GitLabServerUrl": self.gitlab_url,
            "GitLabTokenSecretArn": self.token_secret_arn,
            "GitLabCaBundleS3Uri": self.ca_bundle_s3_uri,
            OIDC_PARAMETER: self.oidc_provider_arn,
            "LambdaSubnetIds": self.subnet_ids,
            "LambdaSecurityGroupIds": self.security_group_ids,
            "DataAccessPrincipalArns": self.data_access_principal_arns,
            **self.extra,
        }


class RenderError(Exception):
    """An expected failure: the message names the thing that is wrong and how to fix it."""


class _CfnDumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no type hints
    """Emits short-form tags unquoted (`!Ref Name`, not `!Ref 'Name'`) when that reads back the same."""

    def choose_scalar_style(self) -> str:
        event = self.event
        if isinstance(event, yaml.ScalarEvent) and not event.style and (event.tag or "").startswith("!"):
            if self.analysis is None:  # type: ignore[has-type]
                self.analysis = self.analyze_scalar(event.value)
            plain_ok = self.analysis.allow_flow_plain if self.flow_level else self.analysis.allow_block_plain
            reads_as_text = self.resolve(ScalarNode, event.value, (True, False)) == STR_TAG
            if plain_ok and reads_as_text and not self.analysis.empty and not self.analysis.multiline:
                return ""
        return str(super().choose_scalar_style())


def _mapping_get(node: MappingNode, key: str) -> Node | None:
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return value_node
    return None


def _scalar(value: str) -> ScalarNode:
    # Plain style when it reads back as the same string, quoted otherwise (the emitter decides).
    return ScalarNode(tag=STR_TAG, value=value)


def _check_constraints(name: str, value: str, parameter: MappingNode) -> None:
    """Apply the parameter's own AllowedPattern / AllowedValues / MaxLength, like CloudFormation would."""
    plain = yaml.safe_load(yaml.serialize(parameter)) or {}
    pattern = plain.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise RenderError(
            f"value {value!r} for parameter {name} does not match its AllowedPattern {pattern!r}: "
            f"{plain.get('ConstraintDescription', 'fix the value')}"
        )
    max_length = plain.get("MaxLength")
    if max_length is not None and len(value) > int(max_length):
        raise RenderError(f"value for parameter {name} is longer than its MaxLength {max_length}")


def _set(parameter: MappingNode, key: str, value: Node) -> None:
    for index, (key_node, _old) in enumerate(parameter.value):
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            parameter.value[index] = (key_node, value)
            return
    # Keep Type first: insert right after it (readability only).
    position = next(
        (i + 1 for i, (k, _v) in enumerate(parameter.value) if getattr(k, "value", None) == "Type"),
        len(parameter.value),
    )
    parameter.value.insert(position, (_scalar(key), value))


def exact_pattern(values: Sequence[str]) -> str:
    """An AllowedPattern (Java regex, as CloudFormation evaluates it) matching exactly `values`."""
    if not values or values == [""]:
        return "^$"
    return "^(?:" + "|".join(re.escape(v) for v in values) + ")$"


PINNED_DESCRIPTION = "is set by the platform administrator at bootstrap and cannot be changed per project"


def render(template_text: str, pinned: Mapping[str, str | Sequence[str]]) -> str:
    """Return the template with each parameter in `pinned` fixed to its value (Default + AllowedPattern).

    A string parameter allows exactly its value; a CommaDelimitedList parameter allows each listed value
    (an empty list allows only ""). CiAuthMode defaults to access-keys when there is no OIDC provider.
    Unknown parameter names and values that break the parameter's constraints are a RenderError.
    """
    try:
        root = yaml.compose(template_text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise RenderError(f"template is not valid YAML: {exc}") from exc
    if not isinstance(root, MappingNode):
        raise RenderError("template is not a YAML mapping: is it a CloudFormation template?")
    parameters = _mapping_get(root, "Parameters")
    if not isinstance(parameters, MappingNode):
        raise RenderError("template has no Parameters section to render into")

    known = {key.value: value for key, value in parameters.value if isinstance(key, ScalarNode)}
    unknown = sorted(set(pinned) - set(known))
    if unknown:
        raise RenderError(
            f"template has no parameter(s) {', '.join(unknown)}; known parameters: {', '.join(sorted(known))}"
        )
    for name, value in pinned.items():
        parameter = known[name]
        if not isinstance(parameter, MappingNode):
            raise RenderError(f"parameter {name} is not a mapping in the template")
        if isinstance(value, str):
            values = [value]
        elif isinstance(value, Sequence) and all(isinstance(v, str) and v and "," not in v for v in value):
            values = list(value)
        else:
            raise RenderError(
                f"value for parameter {name} must be a string or a list of strings without commas"
            )
        for item in values:
            if item:
                _check_constraints(name, item, parameter)
        _set(parameter, "Default", _scalar(",".join(values)))
        _set(parameter, "AllowedPattern", _scalar(exact_pattern(values)))
        _set(parameter, "ConstraintDescription", _scalar(PINNED_DESCRIPTION))
    if AUTH_MODE_PARAMETER in known and not pinned.get(OIDC_PARAMETER):
        mode = known[AUTH_MODE_PARAMETER]
        if isinstance(mode, MappingNode):
            _set(mode, "Default", _scalar(ACCESS_KEYS))

    rendered = yaml.serialize(root, Dumper=_CfnDumper, width=4096, allow_unicode=True)
    return RENDERED_HEADER + str(rendered)


def bundle_values(manifest: Mapping[str, Any], bucket: str, prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """The bundle parameters for a bundle uploaded to s3://<bucket>/<prefix>/<file>."""
    clean_prefix = prefix.strip("/")
    values = {BUCKET_PARAMETER: bucket}
    for parameter, (section, entry) in MANIFEST_KEYS.items():
        item = manifest.get(section, {}).get(entry) if isinstance(manifest.get(section), Mapping) else None
        file_name = item.get("file") if isinstance(item, Mapping) else None
        if not isinstance(file_name, str) or not file_name:
            raise RenderError(
                f"manifest has no {section}.{entry}.file (needed for {parameter}): "
                "rebuild it with `make package` (scripts/admin/package.py --out build)"
            )
        values[parameter] = f"{clean_prefix}/{file_name}" if clean_prefix else file_name
    return values


def render_project(
    template_text: str, manifest: Mapping[str, Any], bucket: str, prefix: str, platform: Platform
) -> str:
    """The project template of one installation: bundle objects and platform settings pinned."""
    return render(template_text, {**bundle_values(manifest, bucket, prefix), **platform.pinned()})


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Pin the administrator's parameters of the project template."
    )
    parser.add_argument(
        "--manifest", required=True, type=Path, help="build/manifest.json from scripts/admin/package.py"
    )
    parser.add_argument("--bucket", required=True, help="bucket the bundle is uploaded to (BundleBucket)")
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help="key prefix of the uploaded files (default: bundle)"
    )
    parser.add_argument("--gitlab-url", required=True, help="the GitLab server (GitLabServerUrl)")
    parser.add_argument(
        "--token-secret-arn", required=True, help="the GitLab token secret (GitLabTokenSecretArn)"
    )
    parser.add_argument(
        "--data-access-principal-arn",
        action="append",
        required=True,
        help="role or user ARN that may reach project data besides the project's own (repeatable)",
    )
    parser.add_argument("--oidc-provider-arn", default="", help="IAM OIDC provider of the GitLab server")
    parser.add_argument("--ca-bundle-s3-uri", default="", help="CA bundle of a GitLab with a private CA")
    parser.add_argument("--subnet-id", action="append", default=[], help="Lambda subnet (repeatable)")
    parser.add_argument("--security-group-id", action="append", default=[], help="Lambda security group")
    parser.add_argument(
        "--template",
        type=Path,
        default=DEFAULT_TEMPLATE,
        help="source template (default: templates/project.yml)",
    )
    parser.add_argument("--out", required=True, type=Path, help="where to write the rendered template")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        try:
            manifest = json.loads(args.manifest.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise RenderError(f"manifest {args.manifest} not found: run `make package` first") from exc
        except json.JSONDecodeError as exc:
            raise RenderError(
                f"manifest {args.manifest} is not valid JSON ({exc}): run `make package` again"
            ) from exc
        if not isinstance(manifest, Mapping):
            raise RenderError(f"manifest {args.manifest} is not a JSON object: run `make package` again")
        try:
            template_text = args.template.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise RenderError(f"template {args.template} not found") from exc
        platform = Platform(
            gitlab_url=args.gitlab_url,
            token_secret_arn=args.token_secret_arn,
            data_access_principal_arns=tuple(args.data_access_principal_arn),
            oidc_provider_arn=args.oidc_provider_arn,
            ca_bundle_s3_uri=args.ca_bundle_s3_uri,
            subnet_ids=tuple(args.subnet_id),
            security_group_ids=tuple(args.security_group_id),
        )
        rendered = render_project(template_text, manifest, args.bucket, args.prefix, platform)
    except RenderError as exc:
        print(f"render_template: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(rendered, encoding="utf-8")
    print(f"rendered {args.template} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
