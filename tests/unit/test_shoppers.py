"""Where `clickstream shopper create` finds the shop's pool on AWS (moto stands in for CloudFormation)."""

import json

import boto3
import pytest
from moto import mock_aws

from clickstream.settings import Settings
from clickstream.shop import shoppers

OUTPUTS_ONLY = {
    "Resources": {"Marker": {"Type": "AWS::SQS::Queue"}},
    "Outputs": {"UserPoolId": {"Value": "us-east-1_pool"}, "UserPoolClientId": {"Value": "client-1"}},
}


@pytest.mark.parametrize(("prefix", "deployed_as"), [(None, "clickstream-frontend"), ("team-b", "team-b-frontend")])
def test_on_aws_the_pool_comes_from_the_frontend_stack_of_the_targets_prefix(monkeypatch, prefix, deployed_as):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    if prefix:
        monkeypatch.setenv("CLICKSTREAM_STACK_PREFIX", prefix)
    else:
        monkeypatch.delenv("CLICKSTREAM_STACK_PREFIX", raising=False)
    settings = Settings.from_env({"CLICKSTREAM_TARGET": "aws", "AWS_REGION": "us-east-1"})
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name=settings.region)
        cloudformation.create_stack(StackName=deployed_as, TemplateBody=json.dumps(OUTPUTS_ONLY))
        cloudformation.create_stack(StackName="other-frontend", TemplateBody=json.dumps(
            {**OUTPUTS_ONLY, "Outputs": {"UserPoolId": {"Value": "wrong"}, "UserPoolClientId": {"Value": "wrong"}}}))
        assert shoppers.shop_pool(settings) == shoppers.ShopPool("us-east-1_pool", "client-1")


COGNITO_SYMBOLS = set("^$*.[]{}()?\"!@#%&/\\,><':;|_~`=+- ")


@pytest.mark.parametrize("attempt", range(20))
def test_the_simulators_passwords_meet_the_pools_policy_in_the_template(attempt):
    from pathlib import Path

    from clickstream.infra.templates import TemplateSet

    frontend = next(t for t in TemplateSet(Path(__file__).resolve().parents[2] / "cloudformation") if t.stem == "frontend")
    (policy,) = [r["Properties"]["Policies"]["PasswordPolicy"] for r in frontend.resources.values()
                 if r["Type"] == "AWS::Cognito::UserPool"]
    password = shoppers.random_password()
    assert len(password) >= policy["MinimumLength"]
    assert not policy.get("RequireLowercase") or any(c.islower() for c in password)
    assert not policy.get("RequireUppercase") or any(c.isupper() for c in password)
    assert not policy.get("RequireNumbers") or any(c.isdigit() for c in password)
    assert not policy.get("RequireSymbols") or COGNITO_SYMBOLS & set(password)
