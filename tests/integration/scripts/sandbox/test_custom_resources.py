"""The custom resource bridge completes a moto stack through a real crhelper Lambda over HTTPS."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import crhelper
import pytest

from scripts.sandbox.custom_resources import CustomResourceBridge, ResponseEndpoint
from scripts.sandbox.exceptions import CustomResourceError
from scripts.sandbox.lambda_runner import LambdaRunner, moto_environment
from scripts.sandbox.tls import LocalCA

from .conftest import CODE_BUCKET, REGION, make_zip

RECORDS = "sandbox-test-records"

HANDLER = '''
import json
import boto3
from crhelper import CfnResource

helper = CfnResource(json_logging=False, log_level="INFO", boto_level="CRITICAL", sleep_on_delete=0)


def record(event):
    props = event["ResourceProperties"]
    boto3.client("s3").put_object(
        Bucket=props["RecordBucket"], Key="requests/" + event["RequestType"], Body=json.dumps(event))


@helper.create
def create(event, context):
    record(event)
    props = event["ResourceProperties"]
    if props["Fail"] == "yes":
        raise ValueError("cannot make the widget; set Fail to no: " + props["Name"])
    helper.Data["Greeting"] = "hello " + props["Name"]
    return "widget-" + props["Name"]


@helper.update
def update(event, context):
    record(event)


@helper.delete
def delete(event, context):
    record(event)


def handler(event, context):
    helper(event, context)
'''

TEMPLATE = """
Parameters:
  Name: {Type: String, Default: alpha}
  Fail: {Type: String, Default: "no"}
  Subnets: {Type: CommaDelimitedList, Default: ""}
  CodeKey: {Type: String}
Conditions:
  HasSubnets: !Not [!Equals [!Join [",", !Ref Subnets], ""]]
Resources:
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {Version: "2012-10-17", Statement: []}
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: widget-maker
      Runtime: python3.13
      Handler: app.handler
      Timeout: 20
      Role: !GetAtt Role.Arn
      Code: {S3Bucket: __BUCKET__, S3Key: !Ref CodeKey}
  Widget:
    Type: Custom::Widget
    Properties:
      ServiceToken: !GetAtt Fn.Arn
      Name: !Ref Name
      Fail: !Ref Fail
      Size: 3
      Label: !Sub "${Name}-${AWS::Region}"
      RoleArn: !GetAtt Role.Arn
      Network: !If [HasSubnets, "vpc", !Ref "AWS::NoValue"]
      RecordBucket: __RECORDS__
  Consumer:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: widget-consumer
      Runtime: python3.13
      Handler: app.handler
      Role: !GetAtt Role.Arn
      Code: {S3Bucket: __BUCKET__, S3Key: !Ref CodeKey}
      Environment:
        Variables:
          GREETING: !GetAtt Widget.Greeting
          WIDGET_ID: !Ref Widget
Outputs:
  Greeting:
    Value: !GetAtt Widget.Greeting
""".replace("__BUCKET__", CODE_BUCKET).replace("__RECORDS__", RECORDS)


@pytest.fixture
def code_key(aws_client: Callable[[str], Any], sandbox_aws: str) -> str:
    s3 = aws_client("s3")
    s3.create_bucket(Bucket=CODE_BUCKET)
    s3.create_bucket(Bucket=RECORDS)
    package = Path(crhelper.__file__).parent
    files = {f"crhelper/{p.name}": p.read_text() for p in package.glob("*.py")}
    files["app.py"] = HANDLER
    s3.put_object(Bucket=CODE_BUCKET, Key="bundle/widget.zip", Body=make_zip(files))
    return "bundle/widget.zip"


@pytest.fixture
def bridge_factory(
    aws_client: Callable[[str], Any], sandbox_aws: str, tmp_path: Path
) -> Iterator[Callable[[], CustomResourceBridge]]:
    ca = LocalCA.create(tmp_path / "ca")
    endpoint = ResponseEndpoint(ca.issue("cfn-response"), sandbox_aws).start()
    runner = LambdaRunner(
        lambda_client=aws_client("lambda"), s3_client=aws_client("s3"), work_dir=tmp_path / "lambda",
        aws_env=moto_environment(sandbox_aws, REGION), extra_env={"SSL_CERT_FILE": str(ca.ca_file)},
        code_buckets=(CODE_BUCKET,),
    )

    def make() -> CustomResourceBridge:
        return CustomResourceBridge(
            cfn=aws_client("cloudformation"), runner=runner, endpoint=endpoint, clients=aws_client,
            region=REGION, account="123456789012", state_file=tmp_path / "custom-resources.json",
        )

    yield make
    endpoint.stop()


def recorded(aws_client: Callable[[str], Any], request_type: str) -> dict[str, Any]:
    body = aws_client("s3").get_object(Bucket=RECORDS, Key=f"requests/{request_type}")["Body"].read()
    return dict(json.loads(body))


def create_stack(aws_client: Callable[[str], Any], code_key: str, **params: str) -> str:
    cfn = aws_client("cloudformation")
    parameters = [{"ParameterKey": "CodeKey", "ParameterValue": code_key}]
    parameters += [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()]
    stack_id = cfn.create_stack(StackName="widgets", TemplateBody=TEMPLATE, Parameters=parameters)["StackId"]
    assert cfn.describe_stacks(StackName="widgets")["Stacks"][0]["StackStatus"] == "CREATE_IN_PROGRESS"
    return str(stack_id)


def test_create_completes_the_stack_with_the_handlers_data(
    aws_client: Callable[[str], Any], code_key: str, bridge_factory: Callable[[], CustomResourceBridge]
) -> None:
    stack_id = create_stack(aws_client, code_key, Name="beta")

    outcomes = bridge_factory().create("widgets")

    assert [o.ok for o in outcomes] == [True], outcomes[0].message
    assert outcomes[0].response is not None
    assert outcomes[0].response.physical_resource_id == "widget-beta"
    stack = aws_client("cloudformation").describe_stacks(StackName="widgets")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]} == {"Greeting": "hello beta"}
    request = recorded(aws_client, "Create")
    assert request["ResponseURL"].startswith("https://127.0.0.1:")
    assert request["StackId"] == stack_id
    assert request["LogicalResourceId"] == "Widget"
    assert request["ResourceType"] == "Custom::Widget"
    props = request["ResourceProperties"]
    assert props["ServiceToken"] == "arn:aws:lambda:us-east-1:123456789012:function:widget-maker"
    assert (props["Size"], props["Label"]) == ("3", "beta-us-east-1")
    assert props["RoleArn"].startswith("arn:aws:iam::123456789012:role/")
    assert "Network" not in props  # AWS::NoValue removed the key
    consumer = aws_client("lambda").get_function(FunctionName="widget-consumer")["Configuration"]
    assert consumer["Environment"]["Variables"] == {"GREETING": "hello beta", "WIDGET_ID": "widget-beta"}
    assert outcomes[0].updated_functions == ("widget-consumer",)


def test_a_failed_create_surfaces_the_handlers_reason(
    aws_client: Callable[[str], Any], code_key: str, bridge_factory: Callable[[], CustomResourceBridge]
) -> None:
    create_stack(aws_client, code_key, Fail="yes")

    (outcome,) = bridge_factory().create("widgets")

    assert not outcome.ok
    assert outcome.response is not None and outcome.response.status == "FAILED"
    with pytest.raises(CustomResourceError, match="cannot make the widget; set Fail to no: alpha"):
        outcome.raise_for_failure()
    stack = aws_client("cloudformation").describe_stacks(StackName="widgets")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_IN_PROGRESS"


def test_delete_sends_the_created_physical_id_before_the_stack_goes(
    aws_client: Callable[[str], Any], code_key: str, bridge_factory: Callable[[], CustomResourceBridge]
) -> None:
    stack_id = create_stack(aws_client, code_key, Name="gamma")
    bridge_factory().create("widgets")

    # a later process (e.g. `demo down`) picks the created resource up from the state file
    deletion = bridge_factory().delete_stack("widgets")

    assert deletion.ok, deletion
    (outcome,) = deletion.outcomes
    assert outcome.ok, outcome.message
    request = recorded(aws_client, "Delete")
    assert request["PhysicalResourceId"] == "widget-gamma"
    assert request["ResourceProperties"]["Name"] == "gamma"
    stack = aws_client("cloudformation").describe_stacks(StackName=stack_id)["Stacks"][0]
    assert stack["StackStatus"] == "DELETE_COMPLETE"


def test_update_sends_old_and_new_properties(
    aws_client: Callable[[str], Any], code_key: str, bridge_factory: Callable[[], CustomResourceBridge]
) -> None:
    create_stack(aws_client, code_key, Name="delta")
    bridge = bridge_factory()
    bridge.create("widgets")

    (outcome,) = bridge.update("widgets", parameters={"Name": "epsilon"})

    assert outcome.ok, outcome.message
    request = recorded(aws_client, "Update")
    assert request["PhysicalResourceId"] == "widget-delta"
    assert request["OldResourceProperties"]["Name"] == "delta"
    assert request["ResourceProperties"]["Name"] == "epsilon"
