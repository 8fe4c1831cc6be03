"""Make moto's CloudFormation name SageMaker resources the way AWS does.

AWS gives an AWS::SageMaker::Endpoint, ::EndpointConfig and ::Model the name in its EndpointName,
EndpointConfigName and ModelName property (CloudFormation Template Reference, each type's page); moto
ignores those properties and names them `<stack>-<LogicalId>-<random>`. The bundle's IAM policies scope
every principal to names carrying its project id, so with moto's names the sandbox could neither show
the real endpoint names nor judge the calls made on them. moto reads a type's name property from its
model's `cloudformation_name_type()`; for these three it returns "", and this sets the real property.

Leaves out: CloudFormation's own generated names for resources that give none (the bundle always names
them), and every other moto resource type (their names are already honoured, or unused here).
"""

from __future__ import annotations

from collections.abc import Callable

NAME_PROPERTIES = {
    "FakeEndpoint": "EndpointName",
    "FakeEndpointConfig": "EndpointConfigName",
    "Model": "ModelName",
}


def _name_type(prop: str) -> Callable[[], str]:
    return lambda: prop


def honour_sagemaker_names() -> None:
    """Idempotent: moto names the three SageMaker resource types from their name properties."""
    from moto.sagemaker import models

    for class_name, prop in NAME_PROPERTIES.items():
        getattr(models, class_name).cloudformation_name_type = staticmethod(_name_type(prop))
