"""CloudFormation templates read into the long-form dicts CloudFormation itself works with."""

from __future__ import annotations

import pytest

from scripts.admin.cfn_yaml import TemplateFormatError, load_template


def test_short_forms_become_long_forms() -> None:
    template = load_template(
        "Resources:\n"
        "  Topic:\n"
        "    Type: AWS::SNS::Topic\n"
        "    Properties:\n"
        "      TopicName: !Sub ${AWS::StackName}-t\n"
        "      DisplayName: !GetAtt Queue.Arn\n"
        "      Tags: !If [HasTags, [!Ref Tag], !Ref AWS::NoValue]\n"
        "Rules:\n"
        "  R: {Assertions: [{Assert: !Contains [[a], !Ref P]}]}\n"
    )
    props = template["Resources"]["Topic"]["Properties"]
    assert props["TopicName"] == {"Fn::Sub": "${AWS::StackName}-t"}
    assert props["DisplayName"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert props["Tags"] == {"Fn::If": ["HasTags", [{"Ref": "Tag"}], {"Ref": "AWS::NoValue"}]}
    assert template["Rules"]["R"]["Assertions"][0]["Assert"] == {"Fn::Contains": [["a"], {"Ref": "P"}]}


def test_json_and_parsed_templates_are_accepted() -> None:
    assert load_template('{"Resources": {}}') == {"Resources": {}}
    assert load_template({"Resources": {"A": {"Type": "X"}}}) == {"Resources": {"A": {"Type": "X"}}}


@pytest.mark.parametrize("text", ["Resources: [unclosed", "{not json", "- just\n- a list\n"])
def test_what_is_not_a_template_is_a_format_error(text: str) -> None:
    with pytest.raises(TemplateFormatError):
        load_template(text)
