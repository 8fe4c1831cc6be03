"""scripts/render_template.py: Defaults set through the YAML tree, everything else unchanged, lint-clean."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint

from scripts import render_template
from scripts.render_template import RenderError, defaults_from_manifest, render
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


def rendered_defaults(**kwargs: Any) -> dict[str, str]:
    return defaults_from_manifest(MANIFEST, "my-bundle-bucket", **kwargs)


def test_defaults_come_from_the_manifest_under_the_prefix() -> None:
    assert rendered_defaults(prefix="bundle/", oidc_provider_arn=OIDC) == {
        "BundleBucket": "my-bundle-bucket",
        "CheckinLambdaKey": "bundle/seedcode_checkin-0123456789ab.zip",
        "TriggerLambdaKey": "bundle/pipeline_trigger-0123456789ab.zip",
        "ModelBuildSeedKey": "bundle/model-build-0123456789ab.zip",
        "ModelDeploySeedKey": "bundle/model-deploy-0123456789ab.zip",
        "GitLabOidcProviderArn": OIDC,
    }
    assert "GitLabOidcProviderArn" not in rendered_defaults()
    assert rendered_defaults(prefix="")["CheckinLambdaKey"] == "seedcode_checkin-0123456789ab.zip"


@pytest.mark.parametrize(
    ("section", "entry"),
    [("lambdas", "seedcode_checkin"), ("lambdas", "pipeline_trigger"), ("seeds", "model-build"),
     ("seeds", "model-deploy")],
)  # fmt: skip
def test_a_missing_manifest_entry_names_itself(section: str, entry: str) -> None:
    manifest = copy.deepcopy(MANIFEST)
    del manifest[section][entry]
    with pytest.raises(RenderError, match=rf"{section}\.{entry}\.file.*make package"):
        defaults_from_manifest(manifest, "my-bundle-bucket")


def test_render_sets_exactly_the_defaults_and_leaves_the_rest_unchanged() -> None:
    defaults = rendered_defaults(oidc_provider_arn=OIDC)
    source = load_text(SOURCE)
    out = load_text(render(SOURCE, defaults))
    for name, value in defaults.items():
        assert out["Parameters"][name]["Default"] == value
    # Undo the defaults: what remains must be identical to the source, short-form functions included.
    for name in defaults:
        out["Parameters"][name].pop("Default")
        source["Parameters"][name].pop("Default", None)
    assert out == source


def test_short_form_tags_survive_as_short_form() -> None:
    text = render(SOURCE, rendered_defaults())
    assert "!Ref SageMakerProjectName" in text
    assert "!GetAtt SeedRepositories.ModelDeployProjectId" in text
    assert "!Sub" in text and "!If" in text and "Fn::" not in text


def test_render_is_deterministic_and_rendering_twice_changes_nothing() -> None:
    once = render(SOURCE, rendered_defaults())
    assert render(SOURCE, rendered_defaults()) == once
    assert load_text(render(once, rendered_defaults())) == load_text(once)


def test_values_that_need_quoting_stay_strings() -> None:
    text = render(SOURCE, {"GitLabGroup": "4711"})
    assert load_text(text)["Parameters"]["GitLabGroup"]["Default"] == "4711"


def test_unknown_parameters_are_refused() -> None:
    with pytest.raises(RenderError, match="no parameter\\(s\\) BundleBuckett"):
        render(SOURCE, {"BundleBuckett": "x"})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [("BundleBucket", "Not_A_Bucket", "AllowedPattern"),
     ("CheckinLambdaKey", "bundle/code.tar.gz", "AllowedPattern"),
     ("GitLabOidcProviderArn", "arn:aws:iam::123:role/x", "AllowedPattern"),
     ("CiAuthMode", "password", "not one of")],
)  # fmt: skip
def test_values_breaking_the_parameters_constraints_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render(SOURCE, {name: value})


def test_templates_that_are_not_cloudformation_are_refused() -> None:
    with pytest.raises(RenderError, match="not valid YAML"):
        render("a: [", {})
    with pytest.raises(RenderError, match="no Parameters"):
        render("Resources: {}\n", {"X": "y"})


def _lint(text: str) -> list[str]:
    return [str(m) for m in lint(text, config=ManualArgs(regions=["us-east-1"]))]


def test_source_template_lints_clean() -> None:
    assert _lint(SOURCE) == []


def test_rendered_template_lints_clean_in_both_auth_setups() -> None:
    assert _lint(render(SOURCE, rendered_defaults(oidc_provider_arn=OIDC))) == []
    assert _lint(render(SOURCE, rendered_defaults())) == []


def test_cli_writes_the_rendered_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(MANIFEST), encoding="utf-8")
    out = tmp_path / "out" / "project.yml"
    code = render_template.main(
        [
            "--manifest",
            str(manifest),
            "--bucket",
            "my-bundle-bucket",
            "--oidc-provider-arn",
            OIDC,
            "--out",
            str(out),
        ]
    )
    assert code == 0
    params = load_text(out.read_text(encoding="utf-8"))["Parameters"]
    assert params["BundleBucket"]["Default"] == "my-bundle-bucket"
    assert params["TriggerLambdaKey"]["Default"] == "bundle/pipeline_trigger-0123456789ab.zip"
    assert params["GitLabOidcProviderArn"]["Default"] == OIDC
    assert out.read_text(encoding="utf-8").startswith("# Rendered by scripts/render_template.py")


def test_cli_explains_a_missing_manifest_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = render_template.main(
        ["--manifest", str(tmp_path / "nope.json"), "--bucket", "b-b-b", "--out", str(tmp_path / "p.yml")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "nope.json not found: run `make package`" in err and "Traceback" not in err
    assert not (tmp_path / "p.yml").exists()


def test_cli_reports_a_bad_bucket_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(MANIFEST), encoding="utf-8")
    code = render_template.main(
        ["--manifest", str(manifest), "--bucket", "UPPER", "--out", str(tmp_path / "p.yml")]
    )
    assert code == 2
    assert "BundleBucket" in capsys.readouterr().err
