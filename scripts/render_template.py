"""Render templates/project.yml for one bundle upload: set the Defaults of the bootstrap-filled parameters.

The template is parsed into a YAML node tree (CloudFormation short-form tags such as !Ref, !Sub and
!GetAtt are kept as they are), the `Default` of each named parameter is set, and the tree is emitted
again. Nothing is string-replaced, and each value is checked against the parameter's own constraints
(AllowedPattern, AllowedValues, MaxLength) so a bad bundle fails here rather than in Studio.

    python scripts/render_template.py --manifest build/manifest.json --bucket BUCKET \
        [--prefix bundle] [--oidc-provider-arn ARN] [--template templates/project.yml] --out build/project.yml
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

REPO_ROOT = Path(__file__).resolve().parent.parent
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
    "# Rendered by scripts/render_template.py from templates/project.yml: edit the source, not this file.\n"
)
OIDC_PARAMETER = "GitLabOidcProviderArn"


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
    allowed = plain.get("AllowedValues")
    if allowed is not None and value not in [str(v) for v in allowed]:
        raise RenderError(f"value {value!r} for parameter {name} is not one of {allowed}")
    max_length = plain.get("MaxLength")
    if max_length is not None and len(value) > int(max_length):
        raise RenderError(f"value for parameter {name} is longer than its MaxLength {max_length}")


def render(template_text: str, defaults: Mapping[str, str]) -> str:
    """Return the template with the `Default` of each parameter in `defaults` set to its value.

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
        raise RenderError("template has no Parameters section to render defaults into")

    known = {key.value: value for key, value in parameters.value if isinstance(key, ScalarNode)}
    unknown = sorted(set(defaults) - set(known))
    if unknown:
        raise RenderError(
            f"template has no parameter(s) {', '.join(unknown)}; known parameters: {', '.join(sorted(known))}"
        )
    for name, value in defaults.items():
        if not isinstance(value, str):
            raise RenderError(f"value for parameter {name} must be a string, got {type(value).__name__}")
        parameter = known[name]
        if not isinstance(parameter, MappingNode):
            raise RenderError(f"parameter {name} is not a mapping in the template")
        _check_constraints(name, value, parameter)
        for index, (key_node, _old) in enumerate(parameter.value):
            if isinstance(key_node, ScalarNode) and key_node.value == "Default":
                parameter.value[index] = (key_node, _scalar(value))
                break
        else:
            # Keep Type first: insert Default right after it (readability only).
            position = next(
                (i + 1 for i, (k, _v) in enumerate(parameter.value) if getattr(k, "value", None) == "Type"),
                len(parameter.value),
            )
            parameter.value.insert(position, (_scalar("Default"), _scalar(value)))

    rendered = yaml.serialize(root, Dumper=_CfnDumper, width=4096, allow_unicode=True)
    return RENDERED_HEADER + str(rendered)


def defaults_from_manifest(
    manifest: Mapping[str, Any],
    bucket: str,
    prefix: str = DEFAULT_PREFIX,
    oidc_provider_arn: str | None = None,
) -> dict[str, str]:
    """The parameter Defaults for a bundle uploaded to s3://<bucket>/<prefix>/<file>."""
    clean_prefix = prefix.strip("/")
    defaults = {BUCKET_PARAMETER: bucket}
    for parameter, (section, entry) in MANIFEST_KEYS.items():
        item = manifest.get(section, {}).get(entry) if isinstance(manifest.get(section), Mapping) else None
        file_name = item.get("file") if isinstance(item, Mapping) else None
        if not isinstance(file_name, str) or not file_name:
            raise RenderError(
                f"manifest has no {section}.{entry}.file (needed for {parameter}): "
                "rebuild it with `make package` (scripts/package.py --out build)"
            )
        defaults[parameter] = f"{clean_prefix}/{file_name}" if clean_prefix else file_name
    if oidc_provider_arn is not None:
        defaults[OIDC_PARAMETER] = oidc_provider_arn
    return defaults


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Set the bootstrap-filled parameter Defaults of the project template."
    )
    parser.add_argument(
        "--manifest", required=True, type=Path, help="build/manifest.json from scripts/package.py"
    )
    parser.add_argument("--bucket", required=True, help="bucket the bundle is uploaded to (BundleBucket)")
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help="key prefix of the uploaded files (default: bundle)"
    )
    parser.add_argument(
        "--oidc-provider-arn",
        default=None,
        help="IAM OIDC provider ARN of the GitLab server (GitLabOidcProviderArn)",
    )
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
        defaults = defaults_from_manifest(manifest, args.bucket, args.prefix, args.oidc_provider_arn)
        rendered = render(template_text, defaults)
    except RenderError as exc:
        print(f"render_template: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(rendered, encoding="utf-8")
    print(f"rendered {args.template} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
