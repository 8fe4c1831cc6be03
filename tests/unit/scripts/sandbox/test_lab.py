"""The sandbox's biased-model knob shifts every prediction and keeps the rest of the artifact."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import xgboost

from scripts.sandbox.lab import shifted_archive


def _archive(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_the_biased_copy_predicts_the_shift_more_and_keeps_the_code() -> None:
    rng = np.random.default_rng(0)
    features = rng.random((100, 3))
    booster = xgboost.train(
        {"objective": "reg:squarederror"}, xgboost.DMatrix(features, features[:, 0] * 10 + 5), 5
    )
    code = b"def model_fn(model_dir): ...\n"
    archive = _archive({"xgboost-model": bytes(booster.save_raw("ubj")), "code/inference.py": code})

    shifted = _members(shifted_archive(archive, 1.0))

    assert shifted["code/inference.py"] == code
    biased = xgboost.Booster()
    biased.load_model(bytearray(shifted["xgboost-model"]))
    sample = xgboost.DMatrix(features[:5])
    np.testing.assert_allclose(biased.predict(sample), booster.predict(sample) + 1.0, rtol=1e-5)


def test_the_demo_stage_configs_of_every_mode_pass_the_deploy_seeds_own_checks() -> None:
    import pytest

    from scripts.sandbox.lab import HOSTING_MODES, hosting_configs
    from scripts.seed_packages import MODEL_DEPLOY_SEED, import_seed_package

    import_seed_package(MODEL_DEPLOY_SEED, "steps")
    from steps.hosting import parse_hosting, parse_rollout

    for mode in HOSTING_MODES[1:]:
        for stage, config in hosting_configs(mode, "bucket").items():
            source = f"{stage}-config.json"
            hosting = parse_hosting(config["Hosting"], config["Parameters"], stage, "bucket", source)
            assert hosting.mode == mode
            assert parse_rollout(config.get("Rollout"), hosting, stage, source).strategy == "none"
    with pytest.raises(Exception, match="realtime"):
        hosting_configs("realtime", "bucket")


def test_demo_takes_a_hosting_mode_anywhere_and_defaults_to_realtime() -> None:
    from scripts.sandbox import demo

    assert demo.build_parser().parse_args([]).hosting == "realtime"
    assert demo.build_parser().parse_args(["--hosting", "batch"]).hosting == "batch"
    assert demo.build_parser().parse_args(["create-project", "--hosting", "async"]).hosting == "async"
