"""The Abalone model-build pipeline on the SageMaker Python SDK v3.

preprocess (scikit-learn processing) -> train (built-in XGBoost, validation channel, early
stopping, managed spot) -> package (model.tar.gz + code/inference.py + code/features.py) ->
evaluate (the packaged entry point on raw test records) -> MSE <= threshold ?
(RegisterModel ? register : stop) : fail. A merge request's candidate runs with RegisterModel=false:
evaluated, gated, never registered.

Provenance: the Git* / GitLab* parameters (filled by run-pipeline from GitLab CI's predefined
variables) go into the registered version's MetadataProperties (CommitId, Repository, GeneratedBy),
its CustomerMetadataProperties and its description.

The registered container is the XGBoost image in script mode: SAGEMAKER_PROGRAM=inference.py and
SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code, the code inside the artifact because the deploy
repository's model is network-isolated (it cannot fetch a source tarball at run time).

Building the definition talks to S3: the SDK uploads the processing scripts under
s3://<default_bucket>/<pipeline_name>/code/<content hash>/, and get_pipeline uploads the model
code (MODEL_CODE files) under s3://<default_bucket>/<base_job_prefix>/model-code/<content hash>/,
so the same sources give the same definition JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.abalone import hyperparameters as hp

BASE_DIR = Path(__file__).resolve().parent
PROCESSING = "/opt/ml/processing"
SKLEARN_PROCESSING_VERSION = "1.4-2"
PROJECT_TAG_NAME = "sagemaker:project-name"
PROJECT_TAG_ID = "sagemaker:project-id"
METADATA_TEST_DATA_URI = "TestDataS3Uri"  # read by the model-deploy repository's staging test
# What goes into model.tar.gz's code/ directory: the entry point and the one feature module.
ENTRY_POINT = "inference.py"
MODEL_CODE = (ENTRY_POINT, "features.py")
MODEL_CODE_INPUT = "model-code"
SERVING_CODE_DIR = "/opt/ml/model/code"  # where SageMaker extracts the artifact's code/ directory
# The container environment the registered package names (script mode, see inference.py).
SERVING_ENVIRONMENT = {
    "SAGEMAKER_PROGRAM": ENTRY_POINT,
    "SAGEMAKER_SUBMIT_DIRECTORY": SERVING_CODE_DIR,
    "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
}
SCRIPT_MODE_VARIABLES = ("SAGEMAKER_PROGRAM", "SAGEMAKER_SUBMIT_DIRECTORY")
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
CACHE_EXPIRY = "P30D"
# Provenance keys of the registered version's CustomerMetadataProperties (mlops_common.contract has them too).
METADATA_GIT_COMMIT = "GitCommit"
METADATA_GIT_BRANCH = "GitBranch"
METADATA_PIPELINE_URL = "GitLabPipelineUrl"
METADATA_MERGE_REQUEST_URL = "GitLabMergeRequestUrl"
# Pipeline parameters carrying provenance; "none" where a value is unknown (metadata values cannot be empty).
PARAM_COMMIT = "GitCommit"
PARAM_BRANCH = "GitBranch"
PARAM_REPOSITORY = "GitRepositoryUrl"
PARAM_PIPELINE_URL = "GitLabPipelineUrl"
PARAM_MERGE_REQUEST_URL = "GitLabMergeRequestUrl"
PARAM_REGISTER = "RegisterModel"
UNKNOWN = "none"

# Step names (the local runner and the tests refer to them).
STEP_PREPROCESS = "PreprocessAbaloneData"
STEP_TRAIN = "TrainAbaloneModel"
STEP_PACKAGE = "PackageAbaloneModel"
STEP_EVALUATE = "EvaluateAbaloneModel"
STEP_CONDITION = "CheckMSEAbaloneEvaluation"
STEP_REGISTER_GATE = "CheckRegisterAbaloneModel"
STEP_REGISTER = "RegisterAbaloneModel"
STEP_FAIL = "FailMSEAboveThreshold"


def evaluation_report_uri(default_bucket: str, base_job_prefix: str, execution_id: str) -> str:
    """Where an execution's evaluation.json lands (the evaluate step's output under the run prefix)."""
    return f"s3://{default_bucket}/{base_job_prefix}/{execution_id}/evaluation/evaluation.json"


def default_input_data(region: str) -> str:
    """The public Abalone copy the SageMaker project templates use."""
    return f"s3://sagemaker-servicecatalog-seedcode-{region}/dataset/abalone-dataset.csv"


def project_tags(project_name: str | None, project_id: str | None) -> list[dict[str, str]]:
    """The tags SageMaker Studio uses to list a pipeline under its project."""
    tags = []
    if project_name:
        tags.append({"Key": PROJECT_TAG_NAME, "Value": project_name})
    if project_id:
        tags.append({"Key": PROJECT_TAG_ID, "Value": project_id})
    return tags


class DefinitionError(ValueError):
    """The pipeline would register something SageMaker could not serve; the message says what."""


def check_serving_containers(containers: Sequence[Mapping[str, Any]]) -> None:
    """Refuse a container whose script-mode variables are set but empty.

    In the XGBoost image a set SAGEMAKER_PROGRAM, even "", selects script mode and imports a module
    named "" (sagemaker_containers' ServingEnv reads it as is; serving.main imports it): the
    endpoint's /ping fails with "ValueError: Empty module name". SDK v3 ModelBuilder.register writes
    both variables empty when it has no entry point.
    """
    for index, container in enumerate(containers):
        environment = container.get("Environment") or {}
        for name in SCRIPT_MODE_VARIABLES:
            if name in environment and not str(environment[name]).strip():
                raise DefinitionError(
                    f"container {index} of the registered model has {name} set but empty; the XGBoost image "
                    "would take it for script mode and fail its /ping: set both script-mode variables to "
                    "the entry point and its directory, or remove them for algorithm mode"
                )
        program = environment.get("SAGEMAKER_PROGRAM")
        if program and not environment.get("SAGEMAKER_SUBMIT_DIRECTORY"):
            raise DefinitionError(
                f"container {index} names SAGEMAKER_PROGRAM={program} without SAGEMAKER_SUBMIT_DIRECTORY; "
                f"the code is in the artifact, so set it to {SERVING_CODE_DIR}"
            )


def upload_model_code(session: Any, bucket: str, prefix: str) -> str:
    """Upload MODEL_CODE under s3://<bucket>/<prefix>/model-code/<content hash>/ once; return that prefix URI."""
    digest = hashlib.sha256()
    sources = {name: (BASE_DIR / name).read_bytes() for name in MODEL_CODE}
    for name, data in sorted(sources.items()):
        digest.update(name.encode() + b"\0" + data + b"\0")
    key_prefix = f"{prefix}/{MODEL_CODE_INPUT}/{digest.hexdigest()[:16]}"
    s3 = session.boto_session.client("s3")
    for name, data in sources.items():
        s3.put_object(Bucket=bucket, Key=f"{key_prefix}/{name}", Body=data)
    return f"s3://{bucket}/{key_prefix}/"


def retry_policies(job: bool) -> list[Any]:
    """Retries for throttling and service faults; job steps also for capacity, limits and internal errors."""
    from sagemaker.mlops.workflow.retry import (
        SageMakerJobExceptionTypeEnum,
        SageMakerJobStepRetryPolicy,
        StepExceptionTypeEnum,
        StepRetryPolicy,
    )

    policies: list[Any] = [
        StepRetryPolicy(
            exception_types=[StepExceptionTypeEnum.THROTTLING, StepExceptionTypeEnum.SERVICE_FAULT],
            interval_seconds=10,
            backoff_rate=2.0,
            max_attempts=5,
        )
    ]
    if job:
        policies.append(
            SageMakerJobStepRetryPolicy(
                exception_types=[
                    SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                    SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT,
                    SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
                ],
                interval_seconds=60,
                backoff_rate=2.0,
                max_attempts=3,
            )
        )
    return policies


def get_session(region: str, default_bucket: str) -> Any:
    """A PipelineSession: SDK calls record job requests instead of starting jobs."""
    import boto3
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    return PipelineSession(boto_session=boto3.Session(region_name=region), default_bucket=default_bucket)


def get_pipeline(
    region: str,
    role: str,
    default_bucket: str,
    pipeline_name: str = "AbalonePipeline",
    model_package_group_name: str = "AbaloneModelPackageGroup",
    base_job_prefix: str = "Abalone",
    processing_instance_type: str = "ml.m5.xlarge",
    training_instance_type: str = "ml.m5.xlarge",
    inference_instance_types: tuple[str, ...] = ("ml.t2.medium", "ml.m5.large", "ml.m5.xlarge"),
    transform_instance_types: tuple[str, ...] = ("ml.m5.large", "ml.m5.xlarge"),
    mse_threshold: float = 6.0,
    hyperparameters: dict[str, str] | None = None,
    sagemaker_session: Any = None,
    enable_caching: bool = True,
    use_spot_training: bool = True,
    max_runtime_seconds: int = 3600,
    max_spot_wait_seconds: int = 7200,
) -> Any:
    """Build the pipeline. Nothing runs until it is upserted and started.

    enable_caching: reuse a step's earlier result when its cache-key attributes are unchanged
    (CacheConfig, CACHE_EXPIRY); the training step's per-execution checkpoint location keeps it
    from ever resuming another run's checkpoints, so in practice preprocessing is what is reused.
    """
    from sagemaker.core import image_uris
    from sagemaker.core.metadata_properties import MetadataProperties
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.processing import ProcessingInput, ProcessingOutput, ScriptProcessor
    from sagemaker.core.shapes.shapes import ProcessingS3Input, ProcessingS3Output
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        InputData,
        OutputDataConfig,
        StoppingCondition,
    )
    from sagemaker.core.workflow.conditions import ConditionEquals, ConditionLessThanOrEqualTo
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import (
        ParameterBoolean,
        ParameterFloat,
        ParameterInteger,
        ParameterString,
    )
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.condition_step import ConditionStep
    from sagemaker.mlops.workflow.fail_step import FailStep
    from sagemaker.mlops.workflow.model_step import ModelStep
    from sagemaker.mlops.workflow.pipeline import Pipeline
    from sagemaker.mlops.workflow.steps import CacheConfig, ProcessingStep, TrainingStep
    from sagemaker.serve.model_builder import ModelBuilder
    from sagemaker.train import ModelTrainer

    session = sagemaker_session or get_session(region, default_bucket)
    prefix = f"s3://{default_bucket}/{base_job_prefix}"
    # Per-execution paths: a registered model's TestDataS3Uri must keep pointing at its own rows.
    run_prefix = Join(on="/", values=[prefix, ExecutionVariables.PIPELINE_EXECUTION_ID])

    input_data = ParameterString(name="InputDataUrl", default_value=default_input_data(region))
    processing_type = ParameterString(name="ProcessingInstanceType", default_value=processing_instance_type)
    processing_count = ParameterInteger(name="ProcessingInstanceCount", default_value=1)
    training_type = ParameterString(name="TrainingInstanceType", default_value=training_instance_type)
    training_count = ParameterInteger(name="TrainingInstanceCount", default_value=1)
    approval_status = ParameterString(name="ModelApprovalStatus", default_value="PendingManualApproval")
    threshold = ParameterFloat(name="MseThreshold", default_value=mse_threshold)
    split_seed = ParameterInteger(name="SplitSeed", default_value=42)
    cache = CacheConfig(enable_caching=enable_caching, expire_after=CACHE_EXPIRY)
    model_code_uri = upload_model_code(session, default_bucket, base_job_prefix)
    model_code_input = ProcessingInput(
        input_name=MODEL_CODE_INPUT,
        s3_input=ProcessingS3Input(
            s3_uri=model_code_uri,
            local_path=f"{PROCESSING}/input/{MODEL_CODE_INPUT}",
            s3_data_type="S3Prefix",
            s3_input_mode="File",
        ),
    )
    register = ParameterBoolean(name=PARAM_REGISTER, default_value=True)
    commit = ParameterString(name=PARAM_COMMIT, default_value=UNKNOWN)
    branch = ParameterString(name=PARAM_BRANCH, default_value=UNKNOWN)
    repository = ParameterString(name=PARAM_REPOSITORY, default_value=UNKNOWN)
    ci_pipeline = ParameterString(name=PARAM_PIPELINE_URL, default_value=UNKNOWN)
    merge_request = ParameterString(name=PARAM_MERGE_REQUEST_URL, default_value=UNKNOWN)

    sklearn_image = image_uris.retrieve(
        framework="sklearn", region=region, version=SKLEARN_PROCESSING_VERSION, instance_type=processing_instance_type
    )
    xgboost_image = image_uris.retrieve(framework="xgboost", region=region, version=hp.XGBOOST_CONTAINER_VERSION)

    # --- preprocess -------------------------------------------------------------------------
    preprocessor = ScriptProcessor(
        image_uri=sklearn_image,
        command=["python3"],
        instance_type=processing_type,
        instance_count=processing_count,
        base_job_name=f"{base_job_prefix}-preprocess",
        role=role,
        sagemaker_session=session,
        # preprocess.py imports the shared features.py from the model-code input
        env={"PYTHONPATH": f"{PROCESSING}/input/{MODEL_CODE_INPUT}"},
    )
    split_outputs = [
        ProcessingOutput(
            output_name=name,
            s3_output=ProcessingS3Output(
                s3_uri=Join(on="/", values=[run_prefix, "data", name]),
                local_path=f"{PROCESSING}/{name}",
                s3_upload_mode="EndOfJob",
            ),
        )
        for name in ("train", "validation", "test")
    ]
    step_preprocess = ProcessingStep(
        name=STEP_PREPROCESS,
        step_args=preprocessor.run(
            code=str(BASE_DIR / "preprocess.py"),
            inputs=[
                ProcessingInput(
                    input_name="input",
                    s3_input=ProcessingS3Input(
                        s3_uri=input_data,
                        local_path=f"{PROCESSING}/input",
                        s3_data_type="S3Prefix",
                        s3_input_mode="File",
                    ),
                ),
                model_code_input,
            ],
            outputs=split_outputs,
            arguments=[
                "--input-dir",
                f"{PROCESSING}/input",
                "--output-dir",
                PROCESSING,
                "--seed",
                split_seed.to_string(),
            ],
        ),
        cache_config=cache,
        retry_policies=retry_policies(job=True),
    )
    outputs = step_preprocess.properties.ProcessingOutputConfig.Outputs

    # --- train ------------------------------------------------------------------------------
    trainer = ModelTrainer(
        training_image=xgboost_image,
        role=role,
        compute=Compute(
            instance_type=training_type,
            instance_count=training_count,
            volume_size_in_gb=30,
            enable_managed_spot_training=use_spot_training,
        ),
        output_data_config=OutputDataConfig(s3_output_path=f"{prefix}/model"),
        # MaxWaitTimeInSeconds bounds the wait for spot capacity plus the run; SageMaker needs it >= the runtime.
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=max_runtime_seconds, max_wait_time_in_seconds=max_spot_wait_seconds
        ),
        # Per execution: the container resumes from any checkpoint it finds there (a spot interruption).
        checkpoint_config=CheckpointConfig(
            s3_uri=Join(on="/", values=[run_prefix, "checkpoints"]), local_path=CHECKPOINT_LOCAL_PATH
        ),
        hyperparameters=dict(hyperparameters or hp.DEFAULT),
        base_job_name=f"{base_job_prefix}-train",
        sagemaker_session=session,
    )
    step_train = TrainingStep(
        name=STEP_TRAIN,
        step_args=trainer.train(
            input_data_config=[
                InputData(channel_name=name, data_source=outputs[name].S3Output.S3Uri, content_type="text/csv")
                for name in ("train", "validation")
            ],
            wait=False,
        ),
        cache_config=cache,
        retry_policies=retry_policies(job=True),
    )
    trained_model = step_train.properties.ModelArtifacts.S3ModelArtifacts

    # --- package: the model with its inference code ----------------------------------------------
    packager = ScriptProcessor(
        image_uri=sklearn_image,
        command=["python3"],
        instance_type=processing_type,
        instance_count=1,
        base_job_name=f"{base_job_prefix}-package",
        role=role,
        sagemaker_session=session,
    )
    step_package = ProcessingStep(
        name=STEP_PACKAGE,
        step_args=packager.run(
            code=str(BASE_DIR / "package_model.py"),
            inputs=[
                ProcessingInput(
                    input_name="model",
                    s3_input=ProcessingS3Input(
                        s3_uri=trained_model, local_path=f"{PROCESSING}/model", s3_data_type="S3Prefix"
                    ),
                ),
                model_code_input,
            ],
            outputs=[
                ProcessingOutput(
                    output_name="packaged",
                    s3_output=ProcessingS3Output(
                        s3_uri=Join(on="/", values=[run_prefix, "packaged"]),
                        local_path=f"{PROCESSING}/packaged",
                        s3_upload_mode="EndOfJob",
                    ),
                )
            ],
            arguments=[
                "--model-dir",
                f"{PROCESSING}/model",
                "--code-dir",
                f"{PROCESSING}/input/{MODEL_CODE_INPUT}",
                "--output-dir",
                f"{PROCESSING}/packaged",
            ],
        ),
        cache_config=cache,
        retry_policies=retry_policies(job=True),
    )
    packaged_prefix = step_package.properties.ProcessingOutputConfig.Outputs["packaged"].S3Output.S3Uri
    model_data = Join(on="/", values=[packaged_prefix, "model.tar.gz"])

    # --- evaluate ---------------------------------------------------------------------------
    evaluation_report = PropertyFile(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
    evaluator = ScriptProcessor(
        image_uri=xgboost_image,
        command=["python3"],
        instance_type=processing_type,
        instance_count=1,
        base_job_name=f"{base_job_prefix}-evaluate",
        role=role,
        sagemaker_session=session,
    )
    step_evaluate = ProcessingStep(
        name=STEP_EVALUATE,
        step_args=evaluator.run(
            code=str(BASE_DIR / "evaluate.py"),
            inputs=[
                ProcessingInput(
                    input_name="model",
                    s3_input=ProcessingS3Input(
                        s3_uri=packaged_prefix, local_path=f"{PROCESSING}/model", s3_data_type="S3Prefix"
                    ),
                ),
                ProcessingInput(
                    input_name="test",
                    s3_input=ProcessingS3Input(
                        s3_uri=outputs["test"].S3Output.S3Uri,
                        local_path=f"{PROCESSING}/test",
                        s3_data_type="S3Prefix",
                    ),
                ),
            ],
            outputs=[
                ProcessingOutput(
                    output_name="evaluation",
                    s3_output=ProcessingS3Output(
                        s3_uri=Join(on="/", values=[run_prefix, "evaluation"]),
                        local_path=f"{PROCESSING}/evaluation",
                        s3_upload_mode="EndOfJob",
                    ),
                )
            ],
            arguments=[
                "--model-dir",
                f"{PROCESSING}/model",
                "--test-dir",
                f"{PROCESSING}/test",
                "--output-dir",
                f"{PROCESSING}/evaluation",
            ],
        ),
        property_files=[evaluation_report],
        cache_config=cache,
        retry_policies=retry_policies(job=True),
    )
    evaluation_uri = step_evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri

    # --- register ---------------------------------------------------------------------------
    model_metrics = ModelMetrics(
        model_statistics=MetricsSource(
            s3_uri=Join(on="/", values=[evaluation_uri, "evaluation.json"]), content_type="application/json"
        )
    )
    model_builder = ModelBuilder(
        image_uri=xgboost_image,
        s3_model_data_url=model_data,
        role_arn=role,
        sagemaker_session=session,
        env_vars=dict(SERVING_ENVIRONMENT),
    )
    step_register = ModelStep(
        name=STEP_REGISTER,
        step_args=model_builder.register(
            model_package_group_name=model_package_group_name,
            content_types=["text/csv"],
            response_types=["text/csv"],
            inference_instances=list(inference_instance_types),
            transform_instances=list(transform_instance_types),
            approval_status=approval_status,
            model_metrics=model_metrics,
            metadata_properties=MetadataProperties(
                commit_id=commit, repository=repository, generated_by=ci_pipeline
            ),
            description=Join(  # type: ignore[arg-type]  # the SDK serialises pipeline variables here too
                on=" ",
                values=["Abalone model from commit", commit, "of", repository, "branch", branch,
                        "built by", ci_pipeline, "merge request", merge_request],
            ),
            customer_metadata_properties={
                METADATA_TEST_DATA_URI: Join(on="/", values=[outputs["test"].S3Output.S3Uri, "test.csv"]),
                METADATA_GIT_COMMIT: commit,
                METADATA_GIT_BRANCH: branch,
                METADATA_PIPELINE_URL: ci_pipeline,
                METADATA_MERGE_REQUEST_URL: merge_request,
            },
        ),
        retry_policies=retry_policies(job=False),
    )
    check_serving_containers(step_register.arguments["InferenceSpecification"]["Containers"])
    step_register_gate = ConditionStep(
        name=STEP_REGISTER_GATE,
        conditions=[ConditionEquals(left=register, right=True)],
        if_steps=[step_register],
        else_steps=[],
    )

    # --- quality gate -----------------------------------------------------------------------
    mse = JsonGet(
        step_name=step_evaluate.name, property_file=evaluation_report, json_path="regression_metrics.mse.value"
    )
    step_fail = FailStep(
        name=STEP_FAIL,
        error_message=Join(on=" ", values=["MSE", mse, "is above the threshold", threshold]),
    )
    step_condition = ConditionStep(
        name=STEP_CONDITION,
        conditions=[ConditionLessThanOrEqualTo(left=mse, right=threshold)],
        if_steps=[step_register_gate],
        else_steps=[step_fail],
    )

    return Pipeline(
        name=pipeline_name,
        parameters=[
            input_data,
            processing_type,
            processing_count,
            training_type,
            training_count,
            approval_status,
            threshold,
            split_seed,
            register,
            commit,
            branch,
            repository,
            ci_pipeline,
            merge_request,
        ],
        steps=[step_preprocess, step_train, step_package, step_evaluate, step_condition],
        sagemaker_session=session,
    )
