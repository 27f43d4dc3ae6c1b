"""The templates' IAM, for people: every grant of each Lambda function's role, who may assume it, and the managed
policies of a role, read through clickstream.infra.checks.Templates (references followed across templates)."""

from __future__ import annotations

import json
from typing import Any

from clickstream.infra.checks import Templates
from clickstream.infra.network import template_named


def as_list(value: Any) -> list:
    """A policy field that may be one item or a list of them, as a list."""
    return value if isinstance(value, list) else [value]


def _function_roles(templates: Templates):
    """(template, function id, its kind: the Source folder's name, role template, role id) of every function."""
    for template in templates:
        for function_id, function in template.of_type("AWS::Lambda::Function").items():
            kind = function["Metadata"]["clickstream"]["Source"].rsplit("/", 1)[-1]
            role_template, role_id = templates.node(template, function["Properties"]["Role"])
            yield template, function_id, kind, role_template, role_id


def lambda_permissions(templates: Templates) -> list[dict[str, str]]:
    """One row per action each function's role allows in its inline policies: function ("EtlFunction (etl)"),
    role, statement (its Sid), action, resource (resolved, "{template#LogicalId}" for a resource), condition."""
    rows = []
    for _, function_id, kind, role_template, role_id in _function_roles(templates):
        for policy in role_template.props(role_id).get("Policies", []):
            for statement in as_list(policy["PolicyDocument"]["Statement"]):
                for action in as_list(statement["Action"]):
                    rows.append({
                        "function": f"{function_id} ({kind})",
                        "role": role_id,
                        "statement": statement.get("Sid", ""),
                        "action": action,
                        "resource": ", ".join(templates.text(role_template, r) for r in as_list(statement["Resource"])),
                        "condition": json.dumps(statement["Condition"]) if "Condition" in statement else "",
                    })
    return rows


def lambda_trust(templates: Templates) -> dict[str, list]:
    """Each function's role's trusted principals, by function id."""
    return {function_id: [s["Principal"] for s in as_list(role_template.props(role_id)["AssumeRolePolicyDocument"]["Statement"])]
            for _, function_id, _, role_template, role_id in _function_roles(templates)}


def managed_policies(templates: Templates, stem: str, role_id: str) -> list[str]:
    """The names of the AWS managed policies attached to role `role_id` of template `stem`."""
    template = template_named(templates, stem)
    return [templates.text(template, arn).rsplit("/", 1)[-1] for arn in template.props(role_id).get("ManagedPolicyArns", [])]
