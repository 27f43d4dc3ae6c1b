"""The shop's user pool on the local stack: created from frontend.yaml by `up`, shown by `status`, resolved by
the templates' Ref, and `clickstream shopper create`."""

import json
import os
import subprocess
import sys
import uuid

from clickstream import aws
from clickstream.infra.templates import load_stacks
from clickstream.local import stack


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clickstream.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)


def test_up_creates_the_pool_and_client_of_frontend_yaml_and_status_shows_them(local_stack):
    status = json.loads(cli("status", "--json").stdout)
    pool_id, client_id = status["cognito_user_pool_id"], status["cognito_client_id"]
    cognito = aws.client("cognito-idp", local_stack)
    pool = cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    assert pool["Name"] == "clickstream-shop-local"
    assert pool["Policies"]["PasswordPolicy"]["MinimumLength"] == 12
    assert pool["UsernameAttributes"] == ["email"]
    client = cognito.describe_user_pool_client(UserPoolId=pool_id, ClientId=client_id)["UserPoolClient"]
    assert client["ClientName"] == "clickstream-storefront"
    assert "ALLOW_USER_PASSWORD_AUTH" in client["ExplicitAuthFlows"] and "ClientSecret" not in client
    frontend = next(s for s in load_stacks(local_stack) if s.stem == "frontend")
    assert frontend.resolve({"Ref": "UserPool"}) == pool_id
    assert {k: frontend.outputs()[k] for k in ("UserPoolId", "UserPoolClientId")} == {
        "UserPoolId": pool_id, "UserPoolClientId": client_id}
    assert stack.up(local_stack)["cognito_user_pool_id"] == pool_id, "a second up creates no new pool"


def test_shopper_create_makes_a_confirmed_shopper_and_prints_its_sub(local_stack):
    email = f"shopper-{uuid.uuid4().hex[:8]}@example.com"
    created = cli("shopper", "create", "--email", email, "--password", "Long-enough-Pass1")
    assert created.returncode == 0, created.stderr
    sub = created.stdout.strip()
    pool_id = stack.status(local_stack)["cognito_user_pool_id"]
    user = aws.client("cognito-idp", local_stack).admin_get_user(UserPoolId=pool_id, Username=email)
    attributes = {a["Name"]: a["Value"] for a in user["UserAttributes"]}
    assert (user["UserStatus"], attributes["sub"], attributes["email"], attributes["email_verified"]) == (
        "CONFIRMED", sub, email, "true")

    again = cli("shopper", "create", "--email", email, "--password", "Long-enough-Pass1")
    assert again.returncode == 1
    assert again.stderr.strip() == f"Error: a shopper with the email {email} exists already"


def test_a_weak_password_is_one_line_and_leaves_no_shopper(local_stack):
    email = f"weak-{uuid.uuid4().hex[:8]}@example.com"
    weak = cli("shopper", "create", "--email", email, "--password", "short")
    assert weak.returncode == 1 and len(weak.stderr.strip().splitlines()) == 1
    assert weak.stderr.startswith("Error: the password does not meet the pool's policy")
    pool_id = stack.status(local_stack)["cognito_user_pool_id"]
    users = aws.client("cognito-idp", local_stack).list_users(UserPoolId=pool_id, Filter=f'email = "{email}"')
    assert users["Users"] == []
