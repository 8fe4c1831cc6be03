"""The template resolver gives custom resources the values CloudFormation would."""

from __future__ import annotations

from typing import Any

import pytest

from scripts.sandbox.cfn_template import NO_VALUE, Resolver, load_template, references
from scripts.sandbox.exceptions import TemplateResolutionError

TEMPLATE = load_template("""
Parameters:
  Mode: {Type: String, Default: oidc}
  Subnets: {Type: CommaDelimitedList, Default: ""}
  Name: {Type: String}
Conditions:
  IsOidc: !Equals [!Ref Mode, oidc]
  HasSubnets: !Not [!Equals [!Join ["", !Ref Subnets], ""]]
  Both: !And [!Condition IsOidc, !Condition HasSubnets]
Mappings:
  Sizes: {small: {cpu: "1"}}
Resources:
  Role: {Type: AWS::IAM::Role}
  Seed:
    Type: Custom::Seed
    Properties:
      Arn: !GetAtt Role.Arn
      Short: !Sub "${Name}-${AWS::Region}-${Role.Arn}-${!Literal}"
      Long: !Sub ["${Prefix}/${Name}", {Prefix: !Ref Role}]
      Auth: !If [IsOidc, !GetAtt Role.Arn, ""]
      Vpc: !If [HasSubnets, !Ref Subnets, !Ref "AWS::NoValue"]
      Both: !If [Both, "yes", "no"]
      First: !Select [0, !Split [",", "a,b"]]
      Cpu: !FindInMap [Sizes, small, cpu]
""")


def resolver(**parameters: str) -> Resolver:
    def attribute(logical_id: str, resource_type: str, physical_id: str, name: str) -> Any:
        return f"arn:{resource_type}:{physical_id}:{name}"

    return Resolver(
        template=TEMPLATE, parameters=parameters, pseudo={"AWS::Region": "eu-west-1"},
        physical_ids={"Role": "role-1", "Seed": "moto-seed"}, attribute=attribute,
    )


def test_resolves_refs_getatts_subs_and_conditions() -> None:
    props = resolver(Name="p1").resolve(TEMPLATE["Resources"]["Seed"]["Properties"])

    assert props == {
        "Arn": "arn:AWS::IAM::Role:role-1:Arn",
        "Short": "p1-eu-west-1-arn:AWS::IAM::Role:role-1:Arn-${Literal}",
        "Long": "role-1/p1",
        "Auth": "arn:AWS::IAM::Role:role-1:Arn",
        "Both": "no",
        "First": "a",
        "Cpu": "1",
    }  # Vpc dropped: AWS::NoValue


def test_list_parameters_and_false_conditions() -> None:
    props = resolver(Name="p", Mode="access-keys", Subnets="s-1, s-2").resolve(
        TEMPLATE["Resources"]["Seed"]["Properties"]
    )

    assert props["Auth"] == ""
    assert props["Vpc"] == ["s-1", "s-2"]


def test_overrides_win_over_moto_for_custom_resource_attributes() -> None:
    r = resolver(Name="p")
    r.overrides[("Seed", "Ref")] = "real-physical-id"
    r.overrides[("Seed", "ProjectId")] = "42"

    assert r.resolve({"Ref": "Seed"}) == "real-physical-id"
    assert r.resolve({"Fn::GetAtt": ["Seed", "ProjectId"]}) == "42"
    assert r.resolve({"Ref": "AWS::NoValue"}) is NO_VALUE


def test_unknown_names_are_errors_not_guesses() -> None:
    with pytest.raises(TemplateResolutionError, match="Ref Secret"):
        resolver(Name="p").resolve({"Ref": "Secret"})
    with pytest.raises(TemplateResolutionError, match="Name has no value"):
        resolver().resolve({"Ref": "Name"})
    with pytest.raises(TemplateResolutionError, match="Fn::ImportValue is not supported"):
        resolver(Name="p").resolve({"Fn::ImportValue": "x"})


def test_references_finds_ref_getatt_and_sub() -> None:
    assert references({"A": {"Fn::GetAtt": "Seed.ProjectId"}}, "Seed")
    assert references([{"Fn::Sub": "x-${Seed.Path}"}], "Seed")
    assert references({"Ref": "Seed"}, "Seed")
    assert not references({"Fn::Sub": "${Seedling}"}, "Seed")
    assert not references({"Ref": "Role"}, "Seed")
