"""What the notebooks choose with clickstream.target before the stacks exist: the deployer of the mode and the
line that says where the target runs (no stack needed)."""

from __future__ import annotations

import pytest

from clickstream.infra import deploy
from clickstream.local import moto_deploy
from clickstream.settings import Settings
from clickstream.target import Workshop, choose_deployer, target_line

MOTO = "http://127.0.0.1:45123"
REHEARSAL = {"AWS_ENDPOINT_URL": MOTO + "/"}
AWS = {"AWS_ENDPOINT_URL": "https://cloudformation.eu-west-1.amazonaws.com"}


@pytest.mark.parametrize(("target", "env", "expected", "deploys_as"), [
    ("local", {}, moto_deploy, "local"),
    ("aws", REHEARSAL, moto_deploy, "local"),
    ("aws", {}, deploy, "aws"),
    ("aws", AWS, deploy, "aws"),
])
def test_the_deployer_follows_the_mode(target, env, expected, deploys_as):
    settings = Settings(target=target, aws_port=45123, dw_port=45124)
    deployer, deploy_settings = choose_deployer(settings, env)
    assert deployer is expected
    assert deploy_settings == settings.with_(target=deploys_as)


def rehearsal_workshop(endpoint: str) -> Workshop:
    return Workshop(target="aws", mode="rehearsal", region="eu-west-1", api_url="http://127.0.0.1:1",
                    ingest_url="http://127.0.0.1:1/clickstream", raw_bucket="raw", storefront_url=None,
                    dashboard_url="http://127.0.0.1:2", dw_dsn="postgresql://x", dw_admin_dsn=None, dw_secret_id="s",
                    aws_endpoint_url=endpoint, cognito_user_pool_id=None, cognito_client_id=None,
                    ingest_function="ingest", etl_function="etl")


def test_the_target_line_is_the_first_line_of_the_workshops_description():
    settings = Settings(target="aws", region="eu-west-1")
    line = target_line(settings, REHEARSAL)
    assert line == rehearsal_workshop(MOTO).description().splitlines()[0]
    assert MOTO + "," in line and "moto" in line
    assert target_line(settings, {}) == "target aws: the deployed stacks in eu-west-1"
    assert target_line(Settings(target="local"), REHEARSAL) == "target local: the local stack (clickstream up)"
