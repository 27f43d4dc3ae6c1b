"""Small readers of decoded CloudFormation templates shared by the template tests (broken copies are written by
clickstream.infra.breakages)."""

from typing import Any

from clickstream.infra.breakages import broken_copy  # noqa: F401 - for the template tests


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def getatt_target(value: Any) -> str:
    """The logical id of `!GetAtt X.Arn` (both decoded forms)."""
    assert isinstance(value, dict) and list(value) == ["Fn::GetAtt"], f"not a GetAtt: {value}"
    arg = value["Fn::GetAtt"]
    return arg.split(".", 1)[0] if isinstance(arg, str) else arg[0]
