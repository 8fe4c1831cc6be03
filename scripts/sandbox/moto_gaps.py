"""moto behaviour the sandbox corrects in its own process before serving, each where AWS documents otherwise.

- Tags on model package versions. SageMaker's AddTags, ListTags and DeleteTags take the ARN of a model
  package version, `arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>` (SageMaker API
  reference, AddTags; "Tagging model packages" in the Model Registry guide). moto 5.2 splits every ARN into
  exactly two path parts, so these calls fail there with an internal error. The model-deploy pipeline tags
  the version each stage serves (`deployed-to:<stage>`), and the model-build merge request note reads the
  production tag, so the sandbox resolves such ARNs to moto's stored package.
- CloudWatch alarms in stacks (AWS::CloudWatch::Alarm): see allow_cloudwatch_alarms_in_stacks.
"""

from __future__ import annotations

from typing import Any

_PATCHED = "_sandbox_model_package_tags"


def allow_model_package_tags() -> None:
    """Make moto's SageMaker tag model package versions (idempotent)."""
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend

    original = SageMakerModelBackend._get_resource_from_arn
    if getattr(original, _PATCHED, False):
        return

    def resolve(self: Any, arn: str) -> Any:
        resource = arn.split(":", 5)[-1]
        if resource.startswith("model-package/") and resource.count("/") == 2:
            package = self.model_packages.get(self.model_package_name_mapping.get(arn, arn))
            if package is None:
                raise ValidationError(message=f"Could not find model package with ARN {arn}")
            if package.tags is None:
                package.tags = []
            return package
        return original(self, arn)

    setattr(resolve, _PATCHED, True)
    SageMakerModelBackend._get_resource_from_arn = resolve  # type: ignore[method-assign]


def allow_cloudwatch_alarms_in_stacks() -> None:
    """Let moto's CloudFormation create AWS::CloudWatch::Alarm (idempotent).

    moto 5.2 has no CloudFormation model for alarms: it stores None for the resource and then fails
    DescribeStackResources with an internal error. The model-deploy template's rollback alarms (guarded
    rollout) and its async scale-from-zero alarm are such resources; AWS creates them with PutMetricAlarm
    (AWS::CloudWatch::Alarm resource reference), which is what this does in moto's CloudWatch.
    """
    from moto.cloudformation import parsing
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core.common_models import CloudFormationModel

    if "AWS::CloudWatch::Alarm" in parsing.get_model_map():
        return

    class StackAlarm(CloudFormationModel):
        __module__ = "moto.cloudwatch.models"  # moto's model registry files each model under its service

        def __init__(self, name: str) -> None:
            self.name = name

        @staticmethod
        def cloudformation_name_type() -> str:
            return "AlarmName"

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::CloudWatch::Alarm"

        @classmethod
        def create_from_cloudformation_json(
            cls,
            resource_name: str,
            cloudformation_json: Any,
            account_id: str,
            region_name: str,
            **kwargs: Any,
        ) -> StackAlarm:
            props = cloudformation_json["Properties"]
            name = str(props.get("AlarmName") or resource_name)
            cloudwatch_backends[account_id][region_name].put_metric_alarm(
                name=name,
                namespace=props.get("Namespace"),
                metric_name=props.get("MetricName"),
                comparison_operator=props["ComparisonOperator"],
                evaluation_periods=int(props["EvaluationPeriods"]),
                period=int(props.get("Period", 60)),
                threshold=float(props["Threshold"]),
                statistic=props.get("Statistic"),
                description=props.get("AlarmDescription", ""),
                dimensions=list(props.get("Dimensions", [])),
                alarm_actions=[str(a) for a in props.get("AlarmActions", [])],
                treat_missing_data=props.get("TreatMissingData"),
            )
            return cls(name)

        @classmethod
        def update_from_cloudformation_json(
            cls,
            original_resource: Any,
            new_resource_name: str,
            cloudformation_json: Any,
            account_id: str,
            region_name: str,
        ) -> StackAlarm:
            cloudwatch_backends[account_id][region_name].delete_alarms([original_resource.name])
            return cls.create_from_cloudformation_json(
                new_resource_name, cloudformation_json, account_id, region_name
            )

        @classmethod
        def delete_from_cloudformation_json(
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
        ) -> None:
            name = cloudformation_json.get("Properties", {}).get("AlarmName")
            cloudwatch_backends[account_id][region_name].delete_alarms(
                [name if isinstance(name, str) else resource_name]
            )

        def delete(self, account_id: str, region_name: str) -> None:
            """What moto's stack deletion calls first: the alarm by the name it was created with (the
            class method only sees the template's unresolved AlarmName, e.g. a Fn::Sub)."""
            cloudwatch_backends[account_id][region_name].delete_alarms([self.name])

        def is_created(self) -> bool:
            return True

        @property
        def physical_resource_id(self) -> str:
            return self.name

    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()
