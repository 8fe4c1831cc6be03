"""CloudWatch alarm rules from the project template, evaluated against the sandbox's own metrics.

moto stores alarms but evaluates none, and publishes no SQS metrics: the sandbox reads the metric an
alarm watches from the queue itself (ApproximateNumberOfMessagesVisible = the queue attribute
ApproximateNumberOfMessages) and applies the alarm's own Threshold and ComparisonOperator to it. One
datapoint per evaluation period, as a 1-of-1 alarm over the period's Maximum sees it.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

from .exceptions import SandboxError

_COMPARE = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
# The SQS metrics an alarm may watch here, and the queue attribute that holds each one's value.
_SQS_ATTRIBUTES = {
    "ApproximateNumberOfMessagesVisible": "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible": "ApproximateNumberOfMessagesNotVisible",
}


def state(alarm: Mapping[str, Any], value: float) -> str:
    """ "ALARM" or "OK" for one datapoint of the alarm's metric."""
    compare = _COMPARE.get(str(alarm.get("ComparisonOperator")))
    if compare is None:
        raise SandboxError(f"alarm comparison {alarm.get('ComparisonOperator')!r} is not emulated")
    return "ALARM" if compare(value, float(alarm["Threshold"])) else "OK"


def sqs_alarm_state(alarm: Mapping[str, Any], sqs_client: Any, queue_url: str) -> str:
    """The state of an AWS/SQS alarm (template properties, intrinsics resolved) for the queue now."""
    metric = str(alarm.get("MetricName"))
    if alarm.get("Namespace") != "AWS/SQS" or metric not in _SQS_ATTRIBUTES:
        raise SandboxError(
            f"only AWS/SQS queue-depth alarms are emulated, not {alarm.get('Namespace')}/{metric}"
        )
    attribute = _SQS_ATTRIBUTES[metric]
    value = sqs_client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[attribute])["Attributes"][
        attribute
    ]
    return state(alarm, float(value))
