"""The local runner's rules for the built-in XGBoost algorithm, against the container's published behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from pipelines.abalone import hyperparameters as hp
from pipelines.local import builtin_xgboost, images
from pipelines.local.runner import check_spot


@pytest.fixture(scope="module")
def data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    rng = np.random.RandomState(3)
    x = rng.rand(400, 5)
    y = x[:, 0] * 8 + rng.normal(0, 1.0, 400)
    return (y[:300], x[:300]), (y[300:], x[300:])


def test_the_seed_settings_and_the_aws_sample_use_only_names_the_container_accepts():
    for settings in (hp.DEFAULT, hp.AWS_SAMPLE):
        assert builtin_xgboost.validate_hyperparameters(settings).keys() <= builtin_xgboost.ACCEPTED_HYPERPARAMETERS


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("silent", "Extraneous hyperparameter found: silent"),
        ("max_depht", "Extraneous hyperparameter found: max_depht"),
    ],
)
def test_names_the_container_does_not_declare_are_refused_with_its_message(name, message):
    with pytest.raises(builtin_xgboost.TrainingError, match=message):
        builtin_xgboost.validate_hyperparameters({**hp.DEFAULT, name: "1"})


def test_aliases_map_to_their_names_and_num_round_is_required():
    assert builtin_xgboost.validate_hyperparameters({"num_round": "5", "learning_rate": "0.1"}) == {
        "num_round": "5",
        "eta": "0.1",
    }
    with pytest.raises(builtin_xgboost.TrainingError, match="Missing required hyperparameter: num_round"):
        builtin_xgboost.validate_hyperparameters({"eta": "0.1"})


def test_early_stopping_keeps_the_model_cut_at_the_best_iteration(data):
    settings = {
        "num_round": "400",
        "early_stopping_rounds": "10",
        "eval_metric": "rmse",
        "eta": "0.3",
        "max_depth": "6",
    }
    booster = builtin_xgboost.train(settings, *data)
    assert booster.num_boosted_rounds() == booster.best_iteration + 1 < 400
    full = xgb.train(
        {"eta": 0.3, "max_depth": 6, "eval_metric": "rmse", "verbosity": 0},
        xgb.DMatrix(data[0][1], label=data[0][0]),
        num_boost_round=booster.best_iteration + 1,
    )
    x_val = xgb.DMatrix(data[1][1])
    np.testing.assert_allclose(booster.predict(x_val), full.predict(x_val), rtol=1e-6)


def test_without_an_eval_metric_the_container_does_not_stop_early(data):
    booster = builtin_xgboost.train({"num_round": "60", "early_stopping_rounds": "3", "eta": "0.9"}, *data)
    assert booster.num_boosted_rounds() == 60


@pytest.mark.parametrize(
    ("kind", "instance_type", "accepted"),
    [
        ("processing", "ml.m5.xlarge", True),
        ("training", "ml.m5.xlarge", True),
        ("training", "ml.t2.medium", False),  # real-time only
        ("real-time inference", "ml.t2.medium", True),
        ("batch transform", "ml.t2.medium", False),
        ("processing", "ml.m5.huge", False),
        ("processing", "m5.xlarge", False),
    ],
)
def test_instance_types_are_checked_against_what_the_api_accepts(kind, instance_type, accepted):
    if accepted:
        images.check_instance_type(kind, instance_type)
    else:
        with pytest.raises(images.ImageError, match=f"not an instance type SageMaker accepts for {kind}"):
            images.check_instance_type(kind, instance_type)


def test_managed_spot_training_needs_a_wait_time_at_least_the_runtime():
    check_spot(
        {
            "EnableManagedSpotTraining": True,
            "StoppingCondition": {"MaxRuntimeInSeconds": 60, "MaxWaitTimeInSeconds": 60},
        }
    )
    with pytest.raises(builtin_xgboost.TrainingError, match="MaxWaitTimeInSeconds"):
        check_spot({"EnableManagedSpotTraining": True, "StoppingCondition": {"MaxRuntimeInSeconds": 60}})
    with pytest.raises(builtin_xgboost.TrainingError, match="must be at least MaxRuntimeInSeconds"):
        check_spot(
            {
                "EnableManagedSpotTraining": True,
                "StoppingCondition": {"MaxRuntimeInSeconds": 90, "MaxWaitTimeInSeconds": 60},
            }
        )
    check_spot({"StoppingCondition": {"MaxRuntimeInSeconds": 90}})
