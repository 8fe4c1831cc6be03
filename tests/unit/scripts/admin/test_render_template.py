"""scripts/admin/render_template.py: platform settings pinned through the YAML tree, the rest unchanged.

The rendered template stays cfn-lint clean."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint

from scripts.admin import render_template
from scripts.admin.render_template import (
    Platform,
    RenderError,
    bundle_values,
    exact_pattern,
    render,
    render_project,
)
from tests.unit.templates.cfn import TEMPLATES, load_text

SOURCE = (TEMPLATES / "project.yml").read_text(encoding="utf-8")
MANIFEST: dict[str, Any] = {
    "lambdas": {
        "seedcode_checkin": {"file": "seedcode_checkin-0123456789ab.zip", "sha256": "a" * 64},
        "pipeline_trigger": {"file": "pipeline_trigger-0123456789ab.zip", "sha256": "b" * 64},
    },
    "seeds": {
        "model-build": {"file": "model-build-0123456789ab.zip", "sha256": "c" * 64},
        "model-deploy": {"file": "model-deploy-0123456789ab.zip", "sha256": "d" * 64},
    },
}
OIDC = "arn:aws:iam::123456789012:oidc-provider/gitlab.example.com"
TOKEN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gitlab-mlops-platform/gitlab-token-AbCdEf"
ADMIN = "arn:aws:iam::123456789012:role/PlatformAdmin"


def platform(**changes: Any) -> Platform:
    values: dict[str, Any] = {
        "gitlab_url": "https://gitlab.example.com",
        "token_secret_arn": TOKEN,
        "data_access_principal_arns": (ADMIN,),
        "oidc_provider_arn": OIDC,
    }
    values.update(changes)
    return Platform(**values)


def rendered(**changes: Any) -> str:
    return render_project(SOURCE, MANIFEST, "my-bundle-bucket", "bundle", platform(**changes))


def test_bundle_values_come_from_the_manifest_under_the_prefix() -> None:
    assert bundle_values(MANIFEST, "my-bundle-bucket", "bundle/") == {
        "BundleBucket": "my-bundle-bucket",
        "CheckinLambdaKey": "bundle/seedcode_checkin-0123456789ab.zip",
        "TriggerLambdaKey": "bundle/pipeline_trigger-0123456789ab.zip",
        "ModelBuildSeedKey": "bundle/model-build-0123456789ab.zip",
        "ModelDeploySeedKey": "bundle/model-deploy-0123456789ab.zip",
    }
    assert bundle_values(MANIFEST, "b", "")["CheckinLambdaKey"] == "seedcode_checkin-0123456789ab.zip"


@pytest.mark.parametrize(
    ("section", "entry"),
    [("lambdas", "seedcode_checkin"), ("lambdas", "pipeline_trigger"), ("seeds", "model-build"),
     ("seeds", "model-deploy")],
)  # fmt: skip
def test_a_missing_manifest_entry_names_itself(section: str, entry: str) -> None:
    manifest = copy.deepcopy(MANIFEST)
    del manifest[section][entry]
    with pytest.raises(RenderError, match=rf"{section}\.{entry}\.file.*make package"):
        bundle_values(manifest, "my-bundle-bucket")


def test_every_platform_parameter_allows_exactly_the_administrators_value() -> None:
    params = load_text(
        rendered(subnet_ids=("subnet-0a1b2c3d", "subnet-4e5f6a7b"), security_group_ids=("sg-0a1b2c3d",))
    )["Parameters"]
    expected = {
        "GitLabServerUrl": ["https://gitlab.example.com"],
        "GitLabTokenSecretArn": [TOKEN],
        "GitLabOidcProviderArn": [OIDC],
        "GitLabCaBundleS3Uri": [""],
        "LambdaSubnetIds": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"],
        "LambdaSecurityGroupIds": ["sg-0a1b2c3d"],
        "DataAccessPrincipalArns": [ADMIN],
        "BundleBucket": ["my-bundle-bucket"],
    }
    for name, allowed in expected.items():
        pattern = re.compile(params[name]["AllowedPattern"])
        assert all(pattern.fullmatch(v) for v in allowed), name
        assert params[name]["Default"] == ",".join(allowed)
        assert "set by the platform administrator" in params[name]["ConstraintDescription"]
        for near_miss in [v + "x" for v in allowed if v] + ["x" + allowed[0], "https://attacker.example"]:
            assert not pattern.fullmatch(near_miss), (name, near_miss)


def test_the_pattern_escapes_every_regex_character() -> None:
    assert re.fullmatch(exact_pattern(["https://a.b/c"]), "https://aXb/c") is None
    assert re.fullmatch(exact_pattern([""]), "") is not None
    assert re.fullmatch(exact_pattern([]), "x") is None


def test_without_oidc_the_project_defaults_to_access_keys() -> None:
    params = load_text(rendered(oidc_provider_arn=""))["Parameters"]
    assert params["CiAuthMode"]["Default"] == "access-keys"
    assert load_text(rendered())["Parameters"]["CiAuthMode"]["Default"] == "oidc"


def test_render_leaves_everything_else_unchanged() -> None:
    source = load_text(SOURCE)
    out = load_text(rendered())
    pinned = set(platform().pinned()) | set(bundle_values(MANIFEST, "my-bundle-bucket"))
    for name in pinned:
        for key in ("Default", "AllowedPattern", "ConstraintDescription"):
            out["Parameters"][name].pop(key, None)
            source["Parameters"][name].pop(key, None)
    assert out == source


def test_short_form_tags_survive_as_short_form() -> None:
    text = rendered()
    assert "!Ref SageMakerProjectName" in text
    assert "!GetAtt SeedRepositories.ModelDeployProjectId" in text
    assert "!Sub" in text and "!If" in text and "Fn::" not in text


def test_render_is_deterministic_and_rendering_twice_changes_nothing() -> None:
    once = rendered()
    assert rendered() == once
    assert load_text(render_project(once, MANIFEST, "my-bundle-bucket", "bundle", platform())) == load_text(
        once
    )


def test_unknown_parameters_are_refused() -> None:
    with pytest.raises(RenderError, match="no parameter\\(s\\) BundleBuckett"):
        render(SOURCE, {"BundleBuckett": "x"})


@pytest.mark.parametrize(
    ("name", "value"),
    [("BundleBucket", "Not_A_Bucket"), ("CheckinLambdaKey", "bundle/code.tar.gz"),
     ("GitLabOidcProviderArn", "arn:aws:iam::123:role/x"), ("GitLabServerUrl", "http://gitlab.example.com"),
     ("GitLabTokenSecretArn", "arn:aws:secretsmanager:us-east-1:123456789012:secret:other/token-AbCdEf")],
)  # fmt: skip
def test_values_breaking_the_parameters_own_constraints_are_refused(name: str, value: str) -> None:
    with pytest.raises(RenderError, match="AllowedPattern"):
        render(SOURCE, {name: value})


def test_templates_that_are_not_cloudformation_are_refused() -> None:
    with pytest.raises(RenderError, match="not valid YAML"):
        render("a: [", {})
    with pytest.raises(RenderError, match="no Parameters"):
        render("Resources: {}\n", {"X": "y"})


def _lint(text: str) -> list[str]:
    return [str(m) for m in lint(text, config=ManualArgs(regions=["us-east-1"]))]


@pytest.mark.slow  # cfn-lint
def test_source_template_lints_clean() -> None:
    assert _lint(SOURCE) == []


@pytest.mark.slow  # cfn-lint, once per setup
def test_rendered_template_lints_clean_in_every_setup() -> None:
    assert _lint(rendered()) == []
    assert _lint(rendered(oidc_provider_arn="")) == []
    private = rendered(
        ca_bundle_s3_uri="s3://my-bundle-bucket/bundle/ca.pem",
        subnet_ids=("subnet-0a1b2c3d",),
        security_group_ids=("sg-0a1b2c3d",),
    )
    assert _lint(private) == []


def test_cli_writes_the_rendered_template(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(MANIFEST), encoding="utf-8")
    out = tmp_path / "out" / "project.yml"
    code = render_template.main(
        ["--manifest", str(manifest), "--bucket", "my-bundle-bucket", "--gitlab-url", "https://gitlab.example.com",
         "--token-secret-arn", TOKEN, "--data-access-principal-arn", ADMIN, "--oidc-provider-arn", OIDC,
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    params = load_text(out.read_text(encoding="utf-8"))["Parameters"]
    assert params["BundleBucket"]["Default"] == "my-bundle-bucket"
    assert params["TriggerLambdaKey"]["Default"] == "bundle/pipeline_trigger-0123456789ab.zip"
    assert params["GitLabOidcProviderArn"]["Default"] == OIDC
    assert out.read_text(encoding="utf-8").startswith("# Rendered by scripts/admin/render_template.py")


def test_cli_explains_a_missing_manifest_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = render_template.main(
        ["--manifest", str(tmp_path / "nope.json"), "--bucket", "b-b-b", "--gitlab-url", "https://g.example",
         "--token-secret-arn", TOKEN, "--data-access-principal-arn", ADMIN, "--out", str(tmp_path / "p.yml")]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "nope.json not found: run `make package`" in err and "Traceback" not in err
    assert not (tmp_path / "p.yml").exists()


def test_cli_reports_a_bad_bucket_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(MANIFEST), encoding="utf-8")
    code = render_template.main(
        ["--manifest", str(manifest), "--bucket", "UPPER", "--gitlab-url", "https://g.example",
         "--token-secret-arn", TOKEN, "--data-access-principal-arn", ADMIN, "--out", str(tmp_path / "p.yml")]
    )  # fmt: skip
    assert code == 2
    assert "BundleBucket" in capsys.readouterr().err
